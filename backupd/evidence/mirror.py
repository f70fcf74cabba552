"""WORM mirror: every record becomes an object `evidence/<host>/records/<seq>.json` in an Object-Lock bucket.

The bucket's default COMPLIANCE retention locks each object; the writer identity cannot delete it and an
overwrite only adds a newer version, which `pull` reports (it always uses the oldest version). The host's
first public key is stored once as `evidence/<host>/evidence-ed25519.pub`, pinning it for auditors; every
key as `keys/<kid>.pub`; signed checkpoints as `checkpoints/<seq>-<time>.json` (checkpoint.py).

The mirror anchors the ledger: `probe` refuses an append whose seq the mirror already holds, and an
upload that meets an object with other content is a head regression (guard.py), never a warning.
"""

from __future__ import annotations

import fcntl
import logging
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from backupd.credentials import read_credentials
from backupd.errors import BackupdError, ConfigError, Finding
from backupd.evidence import canonical, checkpoint, guard, keys, record_format, settings
from backupd.evidence.ledger import Ledger, evidence_dir

log = logging.getLogger(__name__)
PREFIX = "evidence/"


def record_key(host: str, seq: int) -> str:
    return f"{PREFIX}{host}/records/{seq:012d}.json"


def client(dest, credentials: dict[str, str]):
    """boto3 S3 client for a policy S3 destination; path-style, short timeouts, bounded retries."""
    import boto3
    from botocore.config import Config as BotoConfig

    if getattr(dest, "kind", None) != "s3":
        raise ConfigError("the evidence mirror needs an S3 destination with Object Lock")
    return boto3.client(
        "s3", endpoint_url=dest.endpoint, region_name=dest.region,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          connect_timeout=5, read_timeout=30))


def destination(cfg, name: str):
    """The policy destination called name."""
    from backupd.policy.lint import load_policy_set

    dests = load_policy_set(cfg.policy_files(), cfg.secrets_dir, held=cfg.secrets_held()).destinations
    if name not in dests:
        raise ConfigError(f"evidence mirror: no destination {name!r} in the policies ({', '.join(sorted(dests))})")
    return dests[name]


@dataclass
class Remote:
    """The configured evidence mirror: destination, S3 client and the host the records are filed under."""

    name: str
    dest: object
    s3: object
    host: str


def connect_if_configured(cfg) -> Remote | None:
    """The mirror of `evidence.mirror`, or None when unset or unusable (logged; records stay pending)."""
    try:
        opts = settings.of(cfg)
    except ConfigError as exc:
        log.warning("evidence mirror: %s", exc)
        return None
    if not opts.mirror:
        return None
    try:
        dest = destination(cfg, opts.mirror)
        s3 = client(dest, read_credentials(credentials_of(cfg, opts, dest)))
    except (BackupdError, OSError) as exc:
        log.warning("evidence mirror %s: records stay pending: %s", opts.mirror, exc)
        return None
    return Remote(opts.mirror, dest, s3, cfg.host or socket.gethostname())


def probe(remote: Remote, ev_dir: Path, seq: int) -> bool:
    """Before seq is appended: refuse (LedgerRegression) when the mirror already holds it. False: unreachable."""
    from botocore.exceptions import ClientError

    key = record_key(remote.host, seq)
    try:
        remote.s3.head_object(Bucket=remote.dest.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return True
        log.warning("evidence mirror %s: cannot check s3://%s/%s (%s); records stay pending", remote.name,
                    remote.dest.bucket, key, exc.response.get("Error", {}).get("Code"))
        return False
    except Exception as exc:  # botocore raises many types; the record is kept locally and pushed later
        log.warning("evidence mirror %s: unreachable (%s); records stay pending", remote.name,
                    exc.__class__.__name__)
        return False
    guard.refuse(ev_dir, [f"record {seq} is about to be appended but s3://{remote.dest.bucket}/{key} already "
                          f"exists: the ledger ends before records already mirrored (cut off or rolled back)"],
                 "mirror")
    return False


def push_and_checkpoint(cfg, remote: Remote, private_key) -> int:
    """Push pending records, then a checkpoint when the last is older than evidence.checkpoint_period.

    A refused upload is a LedgerRegression (raised); an unreachable mirror is logged (records stay pending).
    """
    try:
        pushed = push_pending(cfg.state_dir, remote.dest, remote.s3)
        checkpoint_if_due(cfg.state_dir, remote.dest, remote.s3, private_key, settings.of(cfg).checkpoint_period)
        return pushed
    except guard.LedgerRegression:
        raise
    except (BackupdError, OSError) as exc:
        log.warning("evidence mirror %s: records stay pending: %s", remote.name, exc)
    except Exception as exc:  # botocore raises many types; the record is safe locally and pushed later
        log.warning("evidence mirror %s: records stay pending: %s", remote.name, exc.__class__.__name__)
    return 0


def checkpoint_due(cfg, now: datetime | None = None) -> float | None:
    """Seconds until the next checkpoint is due (<= 0: due now); None without a mirror. Local reads only."""
    try:
        opts = settings.of(cfg)
    except ConfigError:
        return None
    if not opts.mirror:
        return None
    age = checkpoint.age_seconds(checkpoint.load_local(evidence_dir(cfg.state_dir)), now or datetime.now(timezone.utc))
    return 0.0 if age is None else opts.checkpoint_period.total_seconds() - age


def push_if_configured(cfg) -> int:
    """Push pending records (and a due checkpoint) when `evidence.mirror` is set; 0 when unset/unreachable."""
    remote = connect_if_configured(cfg)
    if remote is None:
        return 0
    return push_and_checkpoint(cfg, remote, keys.load_or_create(cfg.state_dir))


def credentials_of(cfg, opts: settings.EvidenceSettings, dest) -> Path:
    """The keys that write the mirror: evidence.credentials_file, else the destination's (writer) keys,
    which a verifier never holds."""
    if opts.credentials_file:
        return opts.credentials_file
    if getattr(cfg, "verifier", False):
        raise ConfigError("role verifier: set evidence.credentials_file (keys that may only add objects under "
                          "evidence/<this host>/) to mirror its records")
    return dest.credentials_file


def push_pending(state_dir: Path, dest, s3) -> int:
    """Upload records not yet mirrored (in seq order); returns how many were uploaded or confirmed.

    LedgerRegression when the ledger lost records or the mirror holds other content for a seq.
    """
    with Ledger(state_dir) as ledger, open(evidence_dir(state_dir) / ".mirror.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another process is pushing; it or the next record picks these up
        with open(ledger.path, "rb") as handle:  # the first line names the host; never the whole ledger
            first = handle.readline().rstrip(b"\n")
        if not first:
            return 0
        host = record_format.parse(first)["host"]
        ledger.check_head()
        _put_public_keys(s3, dest.bucket, host, state_dir)
        done = 0
        for seq, offset, length in ledger.index.unmirrored():
            with open(ledger.path, "rb") as handle:
                handle.seek(offset)
                line = handle.read(length).rstrip(b"\n")
            try:
                _put_once(s3, dest.bucket, record_key(host, seq), line + b"\n", record_format.line_hash(line))
            except Conflict as exc:
                guard.refuse(ledger.dir, [f"{exc}: the mirror already holds another record {seq} (the ledger was "
                                          f"rolled back, cut off or replaced)"], "mirror")
            ledger.index.mark_mirrored(seq)
            done += 1
    return done


def checkpoint_if_due(state_dir: Path, dest, s3, private_key, period: timedelta, force: bool = False) -> dict | None:
    """Push a signed checkpoint of the mirrored head when the last one is older than period."""
    with Ledger(state_dir) as ledger:
        return _checkpoint(ledger, dest, s3, private_key, period, force)


def _checkpoint(ledger: Ledger, dest, s3, private_key, period: timedelta, force: bool) -> dict | None:
    last = checkpoint.load_local(ledger.dir)
    age = checkpoint.age_seconds(last, datetime.now(timezone.utc))
    if not force and age is not None and age < period.total_seconds():
        return None
    ledger.index.catch_up(ledger.path)
    seq, head = ledger.head()
    if not seq or ledger.index.last_mirrored() < seq:
        return None  # a checkpoint only covers records the mirror already holds
    host = record_format.parse(_line_at(ledger, seq))["host"]
    data = checkpoint.build(host, seq, head, private_key)
    doc = checkpoint.parse(data)
    key = checkpoint.object_key(PREFIX, host, doc)
    try:
        _put_once(s3, dest.bucket, key, data + b"\n", record_format.line_hash(data))
    except Conflict as exc:
        guard.refuse(ledger.dir, [str(exc)], "mirror")
    checkpoint.save_local(ledger.dir, data)
    return doc


def _line_at(ledger: Ledger, seq: int) -> bytes:
    row = ledger.index.row(seq)
    with open(ledger.path, "rb") as handle:
        handle.seek(row[0])
        return handle.read(row[1]).rstrip(b"\n")


def _put_public_keys(s3, bucket: str, host: str, state_dir: Path) -> None:
    """keys/<kid>.pub for the current key (write once); evidence-ed25519.pub only once: the first key
    anchors the chain, later keys are introduced by key-rotation records."""
    from backupd.evidence.canonical import sha256

    pem = (keys.key_dir(state_dir) / keys.PUB_NAME).read_bytes()
    kid = keys.fingerprint(keys.load_public(pem, keys.PUB_NAME))
    _put_once(s3, bucket, f"{PREFIX}{host}/keys/{kid}.pub", pem, sha256(pem))
    if not _exists(s3, bucket, f"{PREFIX}{host}/{keys.PUB_NAME}"):
        _put_once(s3, bucket, f"{PREFIX}{host}/{keys.PUB_NAME}", pem, sha256(pem))


class NoEvidence(ConfigError):
    """The mirror holds no object of the host asked for."""


class Conflict(Finding):
    """An object exists in the mirror with other content."""


def _exists(s3, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def _put_once(s3, bucket: str, key: str, body: bytes, digest: str) -> None:
    """PUT unless the object exists; an existing object with other content is never overwritten (Conflict)."""
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    else:
        if head.get("Metadata", {}).get("sha256") == digest:
            return
        raise Conflict(f"s3://{bucket}/{key} exists with other content; not overwriting")
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest})


@dataclass
class PulledHost:
    host: str
    records: int = 0
    ledger: Path | None = None
    public_key: Path | None = None
    problems: list[str] = field(default_factory=list)
    checkpoints: list[dict] = field(default_factory=list)  # signed checkpoints (parsed, not yet verified)


def pull(s3, bucket: str, out_dir: Path, host: str | None = None) -> list[PulledHost]:
    """Rebuild each host's ledger (oldest version of every object) under out_dir/<host>/.

    Records are appended to ledger.jsonl as they are read (seq order: the keys are zero-padded), so a
    long ledger never sits in memory."""
    versions = _versions(s3, bucket, f"{PREFIX}{host}/" if host else PREFIX)
    hosts: dict[str, PulledHost] = {}
    ledgers: dict[str, object] = {}  # host -> open ledger.jsonl
    try:
        for key in sorted(versions):
            parts = key[len(PREFIX):].split("/")
            name = parts[0]
            if not name or name.startswith(".") or ".." in name:
                continue
            got = hosts.setdefault(name, PulledHost(name))
            found = versions[key]
            if len(found) > 1:
                got.problems.append(f"{key}: {len(found)} versions (someone tried to overwrite it); the oldest is "
                                    f"used")
            body = s3.get_object(Bucket=bucket, Key=key, **({"VersionId": found[0]} if found[0] else {}))["Body"].read()
            if parts[1:] == [keys.PUB_NAME]:
                got.public_key = _write(out_dir / name / keys.PUB_NAME, body)
            elif len(parts) == 3 and parts[1] == "records":
                if name not in ledgers:
                    got.ledger = _write(out_dir / name / "ledger.jsonl", b"")
                    ledgers[name] = open(got.ledger, "ab")
                ledgers[name].write(body if body.endswith(b"\n") else body + b"\n")
                got.records += 1
            elif len(parts) == 3 and parts[1] == "checkpoints":
                try:
                    got.checkpoints.append(checkpoint.parse(body.strip()))
                except ValueError as exc:
                    got.problems.append(f"{key}: damaged checkpoint ({exc})")
    finally:
        for handle in ledgers.values():
            handle.close()
    for got in hosts.values():
        if got.checkpoints:
            _write(out_dir / got.host / "checkpoints.jsonl",
                   b"".join(canonical.dumps(c) + b"\n" for c in got.checkpoints))
    if host and host not in hosts:
        raise NoEvidence(f"no evidence of host {host!r} in s3://{bucket}/{PREFIX}")
    return [hosts[h] for h in sorted(hosts)]


def _versions(s3, bucket: str, prefix: str) -> dict[str, list[str | None]]:
    """key -> version ids, oldest first (S3 lists a key's versions newest first); None when unversioned."""
    out: dict[str, list[str | None]] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for v in page.get("Versions", []):
            vid = v.get("VersionId")
            out.setdefault(v["Key"], []).append(None if vid in (None, "null") else vid)
    return {k: list(reversed(vs)) for k, vs in out.items()}


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
