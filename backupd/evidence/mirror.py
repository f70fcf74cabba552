"""WORM mirror: every record becomes an object `evidence/<host>/records/<seq>.json` in an Object-Lock bucket.

Each object is written locked COMPLIANCE until now + `evidence.retention` (its own retain-until, not the
bucket's shorter default; `backupd extend-locks` keeps extending it): the writer identity cannot delete it and an
overwrite only adds a newer version, which `pull` reports (it uses the oldest version the host's key chain
signed, pull.py). The host's
first public key is stored once as `evidence/<host>/evidence-ed25519.pub`, pinning it for auditors; every
key as `keys/<kid>.pub`; signed checkpoints as `checkpoints/<seq>-<time>.json` (checkpoint.py).

The mirror anchors the ledger: `probe` refuses an append whose seq the mirror already holds signed by this
host, and an upload that meets such an object with other content is a head regression (guard.py), never a
warning. An object there that none of this host's keys signed was planted by another identity: it is
reported (foreign.py) and never blocks the ledger.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from backupd.config.credentials import read_credentials
from backupd.errors import BackupdError, ConfigError, DependencyError, Finding
from backupd.evidence import bounded, checkpoint, foreign, guard, keys, record_format, settings
from backupd.evidence.ledger import Ledger, evidence_dir
from backupd.evidence.pull import NoEvidence, PulledHost, listing, pull  # noqa: F401 (mirror.pull, as before)
from backupd.storage.evidence_objects import EVIDENCE_PREFIX as PREFIX
from backupd.storage.lockconfig import compliance

log = logging.getLogger(__name__)


def record_key(host: str, seq: int) -> str:
    return f"{PREFIX}{host}/records/{seq:012d}.json"


def client(dest, credentials: dict[str, str], limits: bounded.Limits | None = None, session=None):
    """boto3 S3 client for a policy S3 destination, path-style. limits: per-request timeouts and attempts
    (bounded.py); None: connect 5 s, read 30 s, 3 attempts (pulls and syncs an operator starts)."""
    import boto3
    from botocore.config import Config as BotoConfig

    if getattr(dest, "kind", None) != "s3":
        raise ConfigError("the evidence mirror needs an S3 destination with Object Lock")
    limits = limits or bounded.Limits(connect=5, read=30, attempts=3)
    return (session or boto3).client(
        "s3", endpoint_url=dest.endpoint, region_name=dest.region,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"mode": "standard",
                                                                    "total_max_attempts": limits.attempts},
                          connect_timeout=limits.connect, read_timeout=limits.read))


def destination(cfg, name: str):
    """The policy destination called name: from the policy set the process loaded (cfg.destinations), else
    read from the policy files (schema only: linting them is the loading command's job)."""
    dests = getattr(cfg, "destinations", None)
    if dests is None:
        from backupd.policy.loader import load_policy_file

        dests = {}
        for path in cfg.policy_files():
            loaded = load_policy_file(path, cfg.secrets_dir)
            dests.update(loaded.policy.destinations if loaded.policy else {})
    if name not in dests:
        raise ConfigError(f"evidence mirror: no destination {name!r} in the policies ({', '.join(sorted(dests))})")
    return dests[name]


@dataclass
class Remote:
    """The configured evidence mirror: destination, S3 client and the host the records are filed under.
    With credentials it makes clients with other timeouts (client_for); without, s3 serves every call."""

    name: str
    dest: object
    s3: object
    host: str
    credentials: dict | None = field(default=None, repr=False)
    _clients: dict = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def client_for(self, limits: bounded.Limits | None):
        """A client with these per-request limits, made once per process (None: the default one)."""
        if limits is None or self.credentials is None:
            return self.s3
        with self._lock:  # boto3 sessions are not thread-safe; the daemon's jobs share this mirror
            if limits not in self._clients:
                if "session" not in self._clients:
                    import boto3

                    self._clients["session"] = boto3.session.Session()
                self._clients[limits] = client(self.dest, self.credentials, limits, self._clients["session"])
            return self._clients[limits]


#: The resolved mirror of each configuration: (key, Remote, credentials file, its stat); see connect_if_configured.
_resolved: dict[tuple, tuple[Remote, Path, tuple]] = {}
_resolved_lock = threading.Lock()


def connect_if_configured(cfg) -> Remote | None:
    """The mirror of `evidence.mirror`, or None when unset or unusable (logged; records stay pending).
    Resolved once per configuration: the policies are linted and the client made again only when the
    config, a policy file or the credentials file changed."""
    try:
        opts = settings.of(cfg)
    except ConfigError as exc:
        log.warning("evidence mirror: %s", exc)
        return None
    if not opts.mirror:
        return None
    try:
        key = _config_key(cfg, opts)
        with _resolved_lock:
            known = _resolved.get(key)
            if known is not None and _stat(known[1]) == known[2]:
                return known[0]
            dest = destination(cfg, opts.mirror)
            path = credentials_of(cfg, opts, dest)
            stamp, creds = _stat(path), read_credentials(path)
            remote = Remote(opts.mirror, dest, client(dest, creds), cfg.host or socket.gethostname(), creds)
            _resolved.clear()  # one configuration per process; a reload replaces it
            _resolved[key] = (remote, path, stamp)
            return remote
    except (BackupdError, OSError) as exc:
        log.warning("evidence mirror %s: records stay pending: %s", opts.mirror, exc)
        return None


def _config_key(cfg, opts) -> tuple:
    """What the resolved mirror depends on: the evidence settings, host, role and every policy file's stat."""
    files = tuple((str(p), _stat(p)) for p in cfg.policy_files())
    return (str(getattr(cfg, "path", None)), cfg.host, bool(getattr(cfg, "verifier", False)),
            str(getattr(cfg, "secrets_dir", None)), repr(opts), files)


def _stat(path: Path) -> tuple:
    try:
        st = Path(path).stat()
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def bound(cfg, remote: Remote) -> Remote:
    """remote whose S3 calls all end by the mirror's deadline (bounded.end_of: storage_timeout_seconds, and
    the calling thread's job deadline + GRACE_SECONDS); an already bounded remote keeps its deadline."""
    from backupd.process import execute

    if isinstance(remote.s3, bounded.BoundedS3):
        return remote
    end = bounded.end_of(getattr(cfg, "storage_timeout_seconds", 30.0), execute.time_left(), time.monotonic())
    return replace(remote, s3=bounded.BoundedS3(remote.client_for, end, remote.name))


def probe(remote: Remote, ev_dir: Path, seq: int) -> bool:
    """Before seq is appended: refuse (LedgerRegression) when the mirror already holds it. False: unreachable."""
    from botocore.exceptions import ClientError

    key = record_key(remote.host, seq)
    try:
        remote.s3.head_object(Bucket=remote.dest.bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return True
        code = exc.response.get("Error", {}).get("Code")
        log.warning("evidence mirror %s: cannot check s3://%s/%s (%s)%s; records stay pending", remote.name,
                    remote.dest.bucket, key, code, NO_LIST if code in ("403", "AccessDenied", "Forbidden") else "")
        return False
    except Exception as exc:  # botocore raises many types; the record is kept locally and pushed later
        log.warning("evidence mirror %s: unreachable (%s); records stay pending", remote.name,
                    exc.__class__.__name__)
        return False
    try:  # only a record this host signed proves the ledger went further; anyone else's is a plant
        planted = foreign.Judge(Path(ev_dir).parent, ev_dir).foreign(remote.s3, remote.dest.bucket, key)
    except Exception as exc:  # noqa: BLE001 - botocore raises many types; judged again when pushed
        log.warning("evidence mirror %s: cannot read s3://%s/%s (%s); records stay pending", remote.name,
                    remote.dest.bucket, key, exc.__class__.__name__)
        return False
    if planted:
        return True
    guard.refuse(ev_dir, [f"record {seq} is about to be appended but s3://{remote.dest.bucket}/{key} already "
                          f"exists, signed by this host: the ledger ends before records already mirrored (cut off "
                          f"or rolled back)"], "mirror")
    return False


def push_and_checkpoint(cfg, remote: Remote, private_key) -> int:
    """Push pending records, then a checkpoint when the last is older than evidence.checkpoint_period.

    A refused upload is a LedgerRegression (raised); an unreachable mirror is logged (records stay pending).
    """
    remote = bound(cfg, remote)
    try:
        opts = settings.of(cfg)
        pushed = push_pending(cfg.state_dir, remote.dest, remote.s3, opts.retention)
        checkpoint_if_due(cfg.state_dir, remote.dest, remote.s3, private_key, opts.checkpoint_period,
                          retention=opts.retention)
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
    opts = settings.mirrored(cfg)
    if opts is None:
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
    if getattr(cfg, "role", "backup") != "backup":  # the maintainer and the verifier hold no writer keys
        raise ConfigError(f"role {cfg.role}: set evidence.credentials_file (keys that may only add objects under "
                          "evidence/<this host>/) to mirror its records")
    return dest.credentials_file


def push_pending(state_dir: Path, dest, s3, retention: timedelta = settings.MIN_RETENTION) -> int:
    """Upload records not yet mirrored (in seq order), each locked for retention (evidence.retention);
    returns how many were uploaded or confirmed.

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
        until = datetime.now(timezone.utc) + retention
        judge = foreign.Judge(state_dir, ledger.dir)  # an object another identity planted is noted, not obeyed
        _put_public_keys(s3, dest.bucket, host, state_dir, until, judge)
        done = 0
        for seq, offset, length in ledger.index.unmirrored():
            with open(ledger.path, "rb") as handle:
                handle.seek(offset)
                line = handle.read(length).rstrip(b"\n")
            try:
                _put_once(s3, dest.bucket, record_key(host, seq), line + b"\n", record_format.line_hash(line), until,
                          judge=judge)
            except Conflict as exc:
                guard.refuse(ledger.dir, [f"{exc}: the mirror already holds another record {seq} signed by this "
                                          f"host (the ledger was rolled back, cut off or replaced)"], "mirror")
            ledger.index.mark_mirrored(seq)
            done += 1
    return done


def checkpoint_if_due(state_dir: Path, dest, s3, private_key, period: timedelta, force: bool = False,
                      retention: timedelta = settings.MIN_RETENTION) -> dict | None:
    """Push a signed checkpoint of the mirrored head (locked for retention) when the last one is older than
    period."""
    with Ledger(state_dir) as ledger:
        return _checkpoint(ledger, dest, s3, private_key, period, force, retention)


def _checkpoint(ledger: Ledger, dest, s3, private_key, period: timedelta, force: bool,
                retention: timedelta) -> dict | None:
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
        _put_once(s3, dest.bucket, key, data + b"\n", record_format.line_hash(data),
                  datetime.now(timezone.utc) + retention, judge=foreign.Judge(ledger.dir.parent, ledger.dir))
    except Conflict as exc:
        guard.refuse(ledger.dir, [str(exc)], "mirror")
    checkpoint.save_local(ledger.dir, data)
    return doc


def _line_at(ledger: Ledger, seq: int) -> bytes:
    row = ledger.index.row(seq)
    with open(ledger.path, "rb") as handle:
        handle.seek(row[0])
        return handle.read(row[1]).rstrip(b"\n")


def _put_public_keys(s3, bucket: str, host: str, state_dir: Path, until: datetime, judge=None) -> None:
    """keys/<kid>.pub for the current key (write once); evidence-ed25519.pub only once: the first key
    anchors the chain, later keys are introduced by key-rotation records. An anchor or key file another
    identity planted is noted (judge) and this host's is written beside it, as a newer version."""
    from backupd.evidence.canonical import sha256

    pem = (keys.key_dir(state_dir) / keys.PUB_NAME).read_bytes()
    kid = keys.fingerprint(keys.load_public(pem, keys.PUB_NAME))
    _put_once(s3, bucket, f"{PREFIX}{host}/keys/{kid}.pub", pem, sha256(pem), until, judge=judge)
    anchor = _head(s3, bucket, f"{PREFIX}{host}/{keys.PUB_NAME}")
    mine = {sha256(keys.public_pem(k)) for k in (judge.own.values() if judge else ())}
    if anchor is None or (judge is not None and sha256(_stored(s3, bucket, f"{PREFIX}{host}/{keys.PUB_NAME}"))
                          not in mine):
        try:
            _put_once(s3, bucket, f"{PREFIX}{host}/{keys.PUB_NAME}", pem, sha256(pem), until, judge=judge)
        except Conflict:
            pass  # the anchor holds an older key of this host: the first key stays the anchor


class Conflict(Finding):
    """An object exists in the mirror with other content."""


#: A HEAD of a missing key answers 403, not 404, to an identity without s3:ListBucket (AWS).
NO_LIST = "; an identity without s3:ListBucket is answered 403 for a key that does not exist yet (deploy/iam)"


def _cannot_check(exc, bucket: str, key: str) -> None:
    """A refused HEAD (403) says nothing about the key: raise 'cannot check' (records stay pending, logged)."""
    if exc.response.get("Error", {}).get("Code") in ("403", "AccessDenied", "Forbidden"):
        raise DependencyError(f"cannot check s3://{bucket}/{key}: refused (403){NO_LIST}") from None


def _head(s3, bucket: str, key: str) -> dict | None:
    """HEAD of key, None when it does not exist."""
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        _cannot_check(exc, bucket, key)
        raise


#: evidence objects are records, checkpoints and public keys: a few KiB at most
MAX_OBJECT = 1 << 20


def _stored(s3, bucket: str, key: str) -> bytes:
    """The object's current bytes, at most MAX_OBJECT + 1 of them (more is no object this host wrote)."""
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read(MAX_OBJECT + 1)


def _put_once(s3, bucket: str, key: str, body: bytes, digest: str, until: datetime, judge=None) -> None:
    """PUT (locked COMPLIANCE until `until`) unless the object exists; an existing object with other content is
    never overwritten (Conflict) when this host wrote it; one that judge (foreign.Judge) finds planted by
    someone else is noted and this object is written as a newer version (pull picks the signed one)."""
    from botocore.exceptions import ClientError

    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            _cannot_check(exc, bucket, key)
            raise
    else:
        # the stored sha256 is only metadata, which whoever writes the object sets: a key file's content is
        # public, so a plant could carry the right digest on other bytes; the bytes themselves must match
        if head.get("Metadata", {}).get("sha256") == digest and _stored(s3, bucket, key) == body:
            return
        if judge is None or not judge.foreign(s3, bucket, key):
            raise Conflict(f"s3://{bucket}/{key} exists with other content; not overwriting")
    s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest}, **compliance(until))


def _versions(s3, bucket: str, prefix: str) -> dict[str, list[str | None]]:
    """key -> version ids, oldest first; None when unversioned (pull.listing without the sizes)."""
    return {k: [vid for vid, _ in vs] for k, vs in listing(s3, bucket, prefix).items()}
