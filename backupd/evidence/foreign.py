"""Objects in this host's mirror prefix that this host did not sign (planted by someone else).

Another identity with a write grant on the bucket can PUT `evidence/<this host>/records/<next seq>.json`
before this host does. Such an object is not a head regression: only a record (checkpoint, public key)
signed by one of this host's keys proves that the ledger once went further. A foreign object is
reported loudly (a warning, `state_dir/evidence/foreign.json`, then a `mirror-foreign-object` record)
and this host's object is written beside it, as a newer version; `pull` picks the version the host's
key chain signed. Bodies are read bounded: data read from storage is attacker input.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path

from backupd.errors import ConfigError
from backupd.evidence import canonical, checkpoint, keys, record_format

log = logging.getLogger(__name__)
KIND = "mirror-foreign-object"
ACK_KIND = "mirror-foreign-object-acknowledged"
FINDING_NAME = "foreign.json"
MAX_BYTES = 16 * 1024 * 1024  # far above any record; a larger object is not one of ours
MAX_VERSIONS = 64  # versions of one key read when deciding whether any is ours (oldest and newest)
MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchVersion")


def own_keys(state_dir: Path) -> dict:
    """kid -> public key of every key this host signed with: current, retired, pending rotation."""
    kdir = keys.key_dir(state_dir)
    found = {}
    for path in [kdir / keys.PUB_NAME, *sorted((kdir / "retired").glob("*.pub"))]:
        try:
            pub = keys.load_public(path.read_bytes(), str(path))
        except (OSError, ValueError):
            continue
        found[keys.fingerprint(pub)] = pub
    pending = keys.pending_path(state_dir)
    if pending.exists():
        try:
            pub = keys.load_private(pending).public_key()
            found[keys.fingerprint(pub)] = pub
        except (OSError, ValueError):
            pass
    return found


def signer(key: str, body: bytes, trusted: dict) -> str | None:
    """The kid in trusted that signed body (a record, checkpoint or public key under key), else None.
    The body must also be the object its key names (record <seq>, checkpoint <seq>-<time>, keys/<kid>.pub):
    a genuine object copied to another key (the host's record 1 as its next record) is not the host's."""
    data = body.rstrip(b"\n")
    name = key.rsplit("/", 2)
    try:
        if name[-2] == "records":
            rec = record_format.parse(data)
            ok = rec["kid"] in trusted and record_format.signature_ok(rec, trusted[rec["kid"]])
            return rec["kid"] if ok and name[-1] == f"{rec['seq']:012d}.json" else None
        if name[-2] == "checkpoints":
            doc = checkpoint.parse(data)
            ok = doc["kid"] in trusted and checkpoint.signature_ok(doc, trusted[doc["kid"]])
            return doc["kid"] if ok and name[-1] == checkpoint.object_key("", "", doc).rsplit("/", 1)[-1] else None
        if key.endswith(".pub"):
            kid = keys.fingerprint(keys.load_public(body, key))
            return kid if kid in trusted and (name[-2] != "keys" or name[-1] == f"{kid}.pub") else None
    except (ValueError, TypeError, KeyError, AttributeError, ConfigError):
        return None
    return None


def read(s3, bucket: str, key: str, version: str | None = None) -> bytes | None:
    """The object's first MAX_BYTES + 1 bytes (None: gone); a larger one is cut there (never ours)."""
    from botocore.exceptions import ClientError

    try:
        got = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in MISSING:
            return None
        raise
    with got["Body"] as body:
        return body.read(MAX_BYTES + 1)


def _version_ids(s3, bucket: str, key: str) -> list[str | None]:
    """Version ids of key, newest first, at most MAX_VERSIONS (oldest and newest kept); [None] when the
    identity may not list versions (then only the current object is judged)."""
    from botocore.exceptions import BotoCoreError, ClientError

    found = []
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
            found += [v.get("VersionId") for v in page.get("Versions", []) if v["Key"] == key]
    except (BotoCoreError, ClientError) as exc:
        log.info("evidence mirror: cannot list the versions of %s (%s); judging its current version", key,
                 exc.__class__.__name__)
        return [None]
    if len(found) > MAX_VERSIONS:
        log.warning("evidence mirror: %s has %d versions; judging the oldest and newest %d", key, len(found),
                    MAX_VERSIONS // 2)
        found = found[:MAX_VERSIONS // 2] + found[-MAX_VERSIONS // 2:]
    return [None if v in (None, "null") else v for v in found] or [None]


class Judge:
    """Decides, for an object met where this host writes, whether this host wrote it (any version signed by
    one of its keys: then the ledger went further once, a regression) or someone else did (noted)."""

    def __init__(self, state_dir: Path, ev_dir: Path):
        self.own = own_keys(state_dir)
        self.ev_dir = Path(ev_dir)

    def foreign(self, s3, bucket: str, key: str) -> bool:
        """True when no version of key is this host's (the object is noted as foreign); False when one is."""
        seen = []
        for version in _version_ids(s3, bucket, key):
            body = read(s3, bucket, key, version)
            if body is None:
                continue
            if len(body) <= MAX_BYTES and signer(key, body, self.own):
                return False
            seen.append({"key": key, "version_id": version, "sha256": canonical.sha256(body[:MAX_BYTES]),
                         "size": len(body) if len(body) <= MAX_BYTES else f">{MAX_BYTES}"})
        note(self.ev_dir, seen, bucket)
        return True


def note(ev_dir: Path, objects: list[dict], bucket: str) -> None:
    """Log each foreign object and add the new ones to state_dir/evidence/foreign.json (to be recorded)."""
    with _locked(ev_dir):
        _add(ev_dir, objects, bucket)


def _add(ev_dir: Path, objects: list[dict], bucket: str) -> None:
    doc = open_finding(ev_dir) or {"objects": []}
    known = {(o.get("key"), o.get("sha256")) for o in doc["objects"]}
    for obj in objects:
        seen = (obj["key"], obj["sha256"]) in known
        log.log(logging.INFO if seen else logging.WARNING,
                "evidence mirror: s3://%s/%s (sha256 %s, %s bytes) is not signed by this host: someone else wrote "
                "into its evidence prefix (not a regression; this host's object is written beside it)",
                bucket, obj["key"], obj["sha256"][:16], obj["size"])
        if not seen:
            doc["objects"].append({**obj, "found": canonical.utc_now(), "recorded_seq": None})
            known.add((obj["key"], obj["sha256"]))
    _save(ev_dir, doc)


def open_finding(ev_dir: Path) -> dict | None:
    """{"objects": [...]} of foreign objects found and not yet acknowledged, or None."""
    try:
        doc = json.loads((Path(ev_dir) / FINDING_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"objects": [{"key": f"{FINDING_NAME} is unreadable", "sha256": "", "size": 0}]}
    if not isinstance(doc, dict) or not isinstance(doc.get("objects"), list):
        return {"objects": [{"key": f"{FINDING_NAME} is damaged", "sha256": "", "size": 0}]}
    return doc if doc["objects"] else None


@contextlib.contextmanager
def _locked(ev_dir: Path):
    """foreign.json is read, changed and replaced by the daemon's jobs, CLI pushes and `acknowledge` at once:
    one at a time, so no object found is lost (an exclusive flock beside it)."""
    with open(Path(ev_dir) / ".foreign.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _save(ev_dir: Path, doc: dict) -> None:
    path = Path(ev_dir) / FINDING_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def unrecorded(ev_dir: Path) -> list[dict]:
    doc = open_finding(ev_dir)
    return [o for o in (doc or {}).get("objects", []) if isinstance(o, dict) and not o.get("recorded_seq")]


def mark_recorded(ev_dir: Path, objects: list[dict], seq: int) -> None:
    done = {(o.get("key"), o.get("sha256")) for o in objects}
    with _locked(ev_dir):
        doc = open_finding(ev_dir) or {"objects": []}
        for obj in doc["objects"]:
            if (obj.get("key"), obj.get("sha256")) in done:
                obj["recorded_seq"] = seq
        _save(ev_dir, doc)


def clear(ev_dir: Path, objects: list[dict]) -> None:
    """Close the finding of these objects (acknowledged); any found since stay open."""
    done = {(o.get("key"), o.get("sha256")) for o in objects}
    with _locked(ev_dir):
        doc = open_finding(ev_dir) or {"objects": []}
        left = [o for o in doc["objects"] if (o.get("key"), o.get("sha256")) not in done]
        if left:
            _save(ev_dir, {**doc, "objects": left})
        else:
            (Path(ev_dir) / FINDING_NAME).unlink(missing_ok=True)
