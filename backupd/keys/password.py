"""Strong repository passwords written to 0600 files, atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def generate() -> str:
    """256 bits of randomness, URL-safe text (43 characters)."""
    return secrets.token_urlsafe(32)


def write_secret_file(path: Path, text: str) -> None:
    """Write text to path with mode 0600 via a temporary file and rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure(path: Path) -> bool:
    """Create a password file unless one exists; True when created now."""
    if path.exists():
        return False
    write_secret_file(path, generate() + "\n")
    return True


def read(path: Path) -> str:
    """The password in path (restic uses the first line)."""
    return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
