"""One ledger record: build, sign, parse. A record is one line of canonical JSON.

Fields: seq (1, 2, ...), time (ISO 8601 UTC), host, kind, data, prev (SHA-256 hex of the previous
line's bytes; 64 zeros for seq 1), kid (signing key fingerprint), sig (base64 Ed25519 signature of
the canonical bytes of every other field).
"""

from __future__ import annotations

import base64
import binascii
import json

from backupd.evidence import canonical, keys

GENESIS = "0" * 64
FIELDS = ("data", "host", "kid", "kind", "prev", "seq", "sig", "time")


def build(seq: int, prev: str, host: str, kind: str, data: dict, private_key, time: str | None = None) -> bytes:
    """The signed line (without newline) of a new record; data is scrubbed of secrets."""
    body = {"seq": seq, "time": time or canonical.utc_now(), "host": host, "kind": kind,
            "data": canonical.normalise(data), "prev": prev, "kid": keys.fingerprint(private_key.public_key())}
    sig = private_key.sign(canonical.dumps(body))
    return canonical.dumps({**body, "sig": base64.b64encode(sig).decode("ascii")})


def parse(line: bytes) -> dict:
    """The record of a line; ValueError saying what is wrong with its form (not its signature)."""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not valid JSON") from None
    if not isinstance(rec, dict) or tuple(sorted(rec)) != FIELDS:
        raise ValueError("fields are not exactly " + ", ".join(FIELDS))
    if not isinstance(rec["seq"], int) or isinstance(rec["seq"], bool):
        raise ValueError("seq is not an integer")
    if canonical.dumps(rec) != line:
        raise ValueError("bytes are not in canonical form (the line was edited)")
    return rec


def signature_ok(rec: dict, public_key) -> bool:
    """True when rec's signature verifies under public_key."""
    body = {k: v for k, v in rec.items() if k != "sig"}
    try:
        sig = base64.b64decode(rec["sig"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return keys.valid(public_key, sig, canonical.dumps(body))


def line_hash(line: bytes) -> str:
    return canonical.sha256(line)


def scan(line: bytes) -> tuple | None:
    """(seq, kind, kid, host, prev, time) of a canonical line without parsing its data, or None.

    Canonical JSON sorts the keys, so `data` comes first and the seven short fields end the line, each
    after a `,"` that no string value can hold unescaped: splitting the last seven off is exact for a
    line that `build` wrote. Values are bytes (seq an int). This is not a validation: a line it reads
    wrongly no longer hashes to its successor's `prev`, and verify then parses it fully (see verify.py).
    """
    parts = line.rsplit(b',"', 7)
    if len(parts) != 8 or not line.startswith(b'{"data":') or b"\\" in parts[1] or b"\\" in parts[3]:
        return None  # an escaped host or kind: the full parser reads it
    try:
        seq = int(parts[5][5:])
    except ValueError:
        return None
    return seq, parts[3][7:-1], parts[2][6:-1], parts[1][7:-1], parts[4][7:-1], parts[7][7:-2]


def signed_parts(line: bytes) -> tuple[str, bytes, bytes] | None:
    """(kid, signed bytes, signature) of a canonical line, without a JSON round-trip, or None.

    The signed bytes are the canonical body: the line without its `,"sig":"..."` member (canonical
    JSON of a mapping minus one key is the same text minus that member). A line that is not canonical
    yields bytes its signature does not verify; the caller then parses it in full to say why.
    """
    parts = line.rsplit(b',"', 7)
    if len(parts) != 8 or not parts[6].startswith(b'sig":"') or not parts[6].endswith(b'"'):
        return None
    try:
        sig = base64.b64decode(parts[6][6:-1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return parts[2][6:-1].decode("ascii", "replace"), b',"'.join(parts[:6] + parts[7:]), sig


ROTATION = "key-rotation"
ROTATION_PURPOSE = "backupd-evidence-key-rotation/1"


def rotation_statement(seq: int, prev: str, host: str, time: str, old_kid: str, new_kid: str) -> bytes:
    """What the new key signs in a key-rotation record: bound to its place in the chain (no replay)."""
    return canonical.dumps({"purpose": ROTATION_PURPOSE, "seq": seq, "prev": prev, "host": host, "time": time,
                            "old_kid": old_kid, "new_kid": new_kid})
