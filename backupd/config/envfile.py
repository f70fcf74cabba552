"""KEY=VALUE files (the credentials files in secrets_dir): the one parser, with errors naming file and line.

Format: one KEY=VALUE per line; blank lines and lines starting with # are skipped; an `export ` prefix is
allowed (so the file can be sourced by a shell); one pair of matching quotes around the value is removed.
Errors never quote a value or a whole line: these files hold secrets.
"""

from __future__ import annotations

import re
from pathlib import Path

from backupd.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def read(path: Path, *, allowed: tuple[str, ...] | None = None, required: tuple[str, ...] = ()) -> dict[str, str]:
    """The KEY -> value pairs of an env file. ConfigError (exit 2) when it cannot be read, a line is not
    KEY=VALUE, a key is not in `allowed` (when given) or given twice, or a `required` key is missing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read ({why})") from None
    keys: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        expected = " or ".join(f"{k}=..." for k in allowed) if allowed else "KEY=VALUE"
        if not sep or not _KEY.fullmatch(name):
            raise ConfigError(f"{path}:{number}: expected {expected}")
        if allowed is not None and name not in allowed:
            raise ConfigError(f"{path}:{number}: unknown key {name}; expected {expected}")
        if name in keys:
            raise ConfigError(f"{path}:{number}: {name} is given twice")
        keys[name] = _unquote(value.strip())
    missing = [k for k in required if k not in keys]
    if missing:
        raise ConfigError(f"{path}: needs {' and '.join(missing)} (KEY=VALUE lines)")
    return keys


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
