"""Signed checkpoints: (host, seq, head hash, time, key id) statements pushed to the WORM mirror.

A checkpoint says "at `time` this host's ledger ended at `seq` and that record's line hashes to
`head`", signed with the ledger key. Stored in the mirror as `evidence/<host>/checkpoints/<seq>-<time>.json`
(write once, Object Lock) and locally as `state_dir/evidence/checkpoint.json` (the last one pushed).
Because the head hash covers the whole chain before it, one signature at a checkpoint authenticates
every record up to it: a verifier may check signatures only at checkpoints.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from pathlib import Path

from backupd.evidence import canonical, keys

FORMAT = "backupd-evidence-checkpoint/1"
LOCAL_NAME = "checkpoint.json"
FIELDS = ("format", "head", "host", "kid", "seq", "sig", "time")


def build(host: str, seq: int, head: str, private_key, time: str | None = None) -> bytes:
    """Canonical signed checkpoint bytes (one line, no newline)."""
    body = {"format": FORMAT, "host": host, "seq": seq, "head": head, "time": time or canonical.utc_now(),
            "kid": keys.fingerprint(private_key.public_key())}
    sig = base64.b64encode(private_key.sign(canonical.dumps(body))).decode("ascii")
    return canonical.dumps({**body, "sig": sig})


def parse(data: bytes) -> dict:
    """The checkpoint of data; ValueError saying what is wrong with its form."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not valid JSON") from None
    if not isinstance(doc, dict) or tuple(sorted(doc)) != FIELDS or doc["format"] != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    if not isinstance(doc["seq"], int) or isinstance(doc["seq"], bool) or doc["seq"] < 1:
        raise ValueError("seq is not a positive integer")
    return doc


def signature_ok(doc: dict, public_key) -> bool:
    body = {k: v for k, v in doc.items() if k != "sig"}
    try:
        sig = base64.b64decode(doc["sig"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return keys.valid(public_key, sig, canonical.dumps(body))


def object_key(prefix: str, host: str, doc: dict) -> str:
    stamp = doc["time"].replace("-", "").replace(":", "")
    return f"{prefix}{host}/checkpoints/{doc['seq']:012d}-{stamp}.json"


def local_path(evidence_dir: Path) -> Path:
    return Path(evidence_dir) / LOCAL_NAME


def load_local(evidence_dir: Path) -> dict | None:
    """The last checkpoint this host pushed, or None (also when the file is damaged)."""
    try:
        return parse(local_path(evidence_dir).read_bytes().strip())
    except (OSError, ValueError):
        return None


def save_local(evidence_dir: Path, data: bytes) -> None:
    path = local_path(evidence_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data + b"\n")
    tmp.replace(path)


def age_seconds(doc: dict | None, now: datetime) -> float | None:
    if doc is None:
        return None
    return (now - datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))).total_seconds()
