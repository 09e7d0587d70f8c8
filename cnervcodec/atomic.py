"""Outputs that appear whole or not at all: write beside the target, then rename over it.

Every command writes this way, so an interrupted run never leaves half a file under the final
name. Temporary files are created with mode 0o666 less the umask (``tempfile.mkstemp`` would make
them private, and the rename would keep that).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
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
