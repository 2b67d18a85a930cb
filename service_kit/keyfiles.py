"""Key files are created 0600 from the first byte: never world-readable, even briefly."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path`` with mode 0600."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """Read a key file, refusing one that group or others can read."""
    target = Path(path)
    mode = target.stat().st_mode & 0o777
    if mode & 0o077:
        raise PermissionError(f"key file {target.name} has mode {mode:o}; expected 0600")
    return target.read_bytes()
