"""Canonical record bytes and secret scrubbing: what goes into the ledger, byte for byte.

Canonical JSON = sorted keys, no whitespace, UTF-8, integers only: datetimes become ISO 8601 UTC
strings, non-integral floats become decimal strings (their shortest round-trip repr), so two
implementations can never disagree about the bytes that were signed.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timezone
from pathlib import PurePath

REDACTED = "[redacted]"
#: Keys whose values are secrets. `*_file`/`*_path` name where a secret lives, which is not secret.
_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?|secret|token|private|credential|api[_-]?key|access[_-]?key"
                         r"|signing[_-]?key|^key$", re.I)
_NOT_SECRET_KEY = re.compile(r"(_file|_path|_dir|_fingerprint|_id_hint)$", re.I)
#: Values that are secrets wherever they appear.
_SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|AWS_SECRET_ACCESS_KEY\s*=\S|RESTIC_PASSWORD\s*=\S")


def utc_now() -> str:
    """Current time, ISO 8601 UTC with microseconds ('2026-11-22T12:00:00.123456Z')."""
    return iso(datetime.now(timezone.utc))


def iso(when: datetime) -> str:
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name)) and not _NOT_SECRET_KEY.search(name)


def text(value: str) -> str:
    """A str that encodes as UTF-8: a file name that is not UTF-8 (undecodable bytes arrive as lone
    surrogates, b'bad\\xff.txt' -> 'bad\\udcff.txt') becomes its bytes' text with backslash escapes
    ('bad\\\\xff.txt'), as `ls -b` shows it."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def normalise(value, key: str = ""):
    """Plain JSON data: secrets redacted, floats/datetimes/paths made unambiguous, text valid UTF-8."""
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {text(str(k)): normalise(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [normalise(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return text(str(value))
    plain = text(str(value))
    return REDACTED if _SECRET_VALUE.search(plain) else plain


def dumps(doc: dict) -> bytes:
    """Canonical bytes of an already normalised document."""
    # backslashreplace: a lone surrogate that skipped normalise() becomes a JSON \\u escape, never a crash
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8", "backslashreplace")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
