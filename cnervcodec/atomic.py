"""Outputs that appear whole or not at all: write beside the target, then rename over it.

Every command writes this way, so an interrupted run never leaves half a file under the final
name. Temporary files are created with mode 0o666 less the umask (``tempfile.mkstemp`` would make
them private, and the rename would keep that). ``check_writable`` is the one check, made before any
work, that an output may be written where it is asked for.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from cnervcodec.errors import BadInputError


def reserve_temp(target: Path, token: str | None = None) -> tuple[Path, int]:
    """Create ``.NAME.tmp-TOKEN`` beside ``target`` (same folder: the final rename is atomic)
    exclusively (no two writers share one) with mode 0o666 less the umask (like any new file)."""
    target = Path(target)
    temp = target.with_name(f".{target.name}.tmp-{token or secrets.token_hex(6)}")
    try:
        return temp, os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileNotFoundError:
        raise BadInputError(f"{target}: folder {target.parent} does not exist") from None
    except OSError as error:
        raise BadInputError(f"cannot write {target} ({error.strerror})") from None


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path to write ``target``'s content to; renamed over ``target`` on success,
    removed on any failure (including Ctrl-C)."""
    temp, fd = reserve_temp(target)
    os.close(fd)
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file and a rename."""
    with atomic_path(Path(target)) as temp:
        temp.write_bytes(data)


def check_writable(path: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike] = (),
                   target: Path | None = None) -> None:
    """Refuse an output over an input, in a missing folder, onto a folder, or over a file without -y.

    ``target`` is the file actually written when ``path`` names several (a PNG pattern: its first
    frame); messages name ``path`` as the user typed it, and the existing file itself.
    """
    target = Path(path) if target is None else target
    for source in inputs:
        if _same_file(target, Path(source)):
            raise BadInputError(f"{os.fspath(path)}: refusing to write the output over the input")
    if not target.resolve().parent.is_dir():
        raise BadInputError(f"{os.fspath(path)}: folder {target.parent} does not exist")
    if target.is_dir():
        raise BadInputError(f"{target} is a folder: give a file name")
    if target.exists() and not overwrite:
        raise BadInputError(f"{target} exists: pass -y to overwrite it")


def _same_file(a: Path, b: Path) -> bool:
    """Same file by identity when both exist (catches links), else by resolved path."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
