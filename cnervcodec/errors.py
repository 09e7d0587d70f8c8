"""The exception tree of cnervcodec.

Library code raises these; the CLI maps each class to an exit status and prints its message as one
line on stderr. Keeping the status on the class means a new error type cannot forget its code.
"""


class CnervError(Exception):
    """Base of every error the CLI reports as one line (exit status ``exit_code``)."""

    exit_code = 1


class BadInputError(CnervError):
    """The user's input (file, option value, frame range) cannot be used as given."""

    exit_code = 1


class CheckpointError(CnervError):
    """A model or checkpoint file is missing, malformed or does not match the request."""

    exit_code = 1


class CorruptContainerError(CnervError):
    """A .cnrv file is truncated or damaged."""

    exit_code = 3


class UnsupportedVersionError(CnervError):
    """A .cnrv file was written by an incompatible (newer major) version of the format."""

    exit_code = 4


def one_line(error: BaseException) -> str:
    """A library's reason on one line (FFmpeg's without the errno and path PyAV wraps around it)."""
    reason = getattr(error, "strerror", None) or str(error)
    return " ".join(str(reason).split())
