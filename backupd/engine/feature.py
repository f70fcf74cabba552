"""Detect the restic version and gate features on it (0.14 from Debian 12 up to current)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from pathlib import Path

from backupd.errors import DependencyError
from backupd.process import execute

MINIMUM = (0, 14, 0)

#: feature -> first restic version that has it
FEATURES = {
    "exit_codes_10_11_12": (0, 17, 0),   # distinct exit codes: no repository, locked, wrong password
    "stdin_from_command": (0, 17, 0),
    "full_snapshot_id_in_summary": (0, 16, 0),
    "stuck_request_timeout": (0, 17, 1),  # --stuck-request-timeout: a request without progress is retried
}


def parse_version(text: str) -> tuple[int, int, int]:
    """'restic 0.14.0 compiled with go1.19.8 on linux/amd64' -> (0, 14, 0)."""
    match = re.search(r"restic (\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise DependencyError(f"cannot read the restic version from {text[:80]!r}")
    return tuple(int(x) for x in match.groups())  # type: ignore[return-value]


#: Where detect() remembers versions across processes (set_memory); None: per process only.
_memory: Path | None = None


def set_memory(path: Path | None) -> None:
    """Remember restic versions in `path` (a file in the state directory), keyed by the binary's path,
    inode, size and mtime: a command then runs no `restic version` (~30 ms) unless restic changed."""
    global _memory
    _memory = path


@functools.lru_cache(maxsize=8)
def detect(binary: str = "restic") -> tuple[int, int, int]:
    """The version of the restic at `binary`; DependencyError when missing or too old."""
    stamp = _stamp(binary)
    known = _recall(stamp)
    if known is None:
        done = execute.run([binary, "version"], timeout=30)
        if done.returncode != 0:
            raise DependencyError(f"{binary} version failed: {done.stderr.strip()[:200]}")
        known = parse_version(done.stdout.decode("utf-8", "replace"))
        _remember(stamp, known)
    if known < MINIMUM:
        raise DependencyError(f"restic {'.'.join(map(str, known))} is too old; need 0.14 or newer")
    return known


def _stamp(binary: str) -> str | None:
    found = shutil.which(binary)
    try:
        st = os.stat(found) if found else None
    except OSError:
        return None
    return f"{os.path.realpath(found)}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}" if st else None


def _recall(stamp: str | None) -> tuple[int, int, int] | None:
    if stamp is None or _memory is None:
        return None
    try:
        value = json.loads(_memory.read_text()).get(stamp)
    except (OSError, ValueError, AttributeError):
        return None
    ok = isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)
    return tuple(value) if ok else None  # type: ignore[return-value]


def _remember(stamp: str | None, version: tuple[int, int, int]) -> None:
    if stamp is None or _memory is None:
        return
    try:
        tmp = _memory.with_suffix(".tmp")
        tmp.write_text(json.dumps({stamp: list(version)}))  # one binary: the one the config names
        os.replace(tmp, _memory)
    except OSError:
        pass  # remembered per process only


#: What restic's repository format uses, recorded in evidence so an auditor can judge the algorithms
#: (the guideline prefers CRYPTREC-listed ones; AES-256 is).
CRYPTO = "AES-256-CTR encryption, Poly1305-AES authentication, SHA-256 content addressing, scrypt key derivation"


def describe(binary: str = "restic") -> dict:
    """The engine facts that go into backup evidence."""
    return {"restic": ".".join(map(str, detect(binary))), "crypto": CRYPTO}


def has(feature: str, version: tuple[int, int, int]) -> bool:
    """True when `version` supports `feature`."""
    return version >= FEATURES[feature]
