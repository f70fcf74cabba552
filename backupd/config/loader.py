"""The daemon's own configuration file (backupd.yaml): where policies, state and secrets live.

```yaml
policies: [/etc/backupd/policies/*.yaml]   # globs; relative ones are relative to this file
state_dir: /var/lib/backupd
secrets_dir: /etc/backupd/secrets
host: tos-01                               # optional; default: the policy site.host, else the hostname
restic: restic                             # optional path of the restic binary
retry_attempts: 3                          # tries when the storage is unreachable
retry_wait_seconds: 10                     # wait before the 2nd try (x2 before the 3rd, ...)
job_timeout_seconds: 14400                 # wall-clock bound of one target's backup (or one check run)
storage_timeout_seconds: 30                # bound of the pre-flight probe and of a storage request's stall
lock_wait_seconds: 60                      # backup/check: wait this long for a live repository lock
role: backup                               # or maintenance (forget, prune, extend-locks with the maintainer's
                                           # keys) or verifier (read-only keys, never writes)
hosts: [tos-01]                            # verifier only: backup hosts whose snapshots it reads
grants: {seaweedfs_identities: s3-identities.json}   # the audit judges every identity's S3 grants
```

`load(path)` -> `Config`. Every key and section is validated by backupd.config.schema (types, ranges, unknown
keys) and every problem is reported as `file:line: field: message` in one ConfigError (exit 2). A new
top-level key goes into KEYS, the `ConfigFile` model and `Config`; a new section into SECTIONS and
`config_schema.SECTION_MODELS`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from backupd.config import credentials, schema as config_schema
from backupd.errors import ConfigError

DEFAULT_PATH = Path("/etc/backupd/backupd.yaml")
KEYS = {"policies", "state_dir", "secrets_dir", "host", "restic", "retry_attempts", "retry_wait_seconds",
        "job_timeout_seconds", "storage_timeout_seconds", "lock_wait_seconds",
        "daemon", "notify", "metrics", "restore_tests", "evidence", "role", "hosts", "grants"}
#: backup: the TOS host's daemon (writer keys). maintenance: backupd-maintenance.service, forget, prune and
#: extend-locks with the maintainer's keys only. verifier: a separate unit or host that runs drills, check
#: slices and storage audits with the auditor's read-only keys and its own signing key; it never writes.
#: Each role needs only its own credential files (backupd.config.credentials: LOAD, USES).
#: Sections: mappings validated by backupd.config.schema (the typed settings come from backupd.daemon.settings
#: and backupd.evidence.settings).
SECTIONS = ("daemon", "notify", "metrics", "evidence", "grants")


@dataclass
class Config:
    """Resolved daemon configuration."""

    path: Path | None
    policies: list[str] = field(default_factory=lambda: ["/etc/backupd/policies/*.yaml"])
    state_dir: Path = Path("/var/lib/backupd")
    secrets_dir: Path = Path("/etc/backupd/secrets")
    host: str | None = None
    restic: str = "restic"
    retry_attempts: int = 3
    retry_wait_seconds: float = 10.0
    job_timeout_seconds: float = 4 * 3600.0
    storage_timeout_seconds: float = 30.0
    lock_wait_seconds: float = 60.0
    daemon: dict = field(default_factory=dict)
    notify: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)  # backupd.evidence.settings: mirror destination, audit period
    restore_tests: Path | None = None  # drill specs; default: restore_tests/ beside the policies' directory
    role: str = "backup"
    hosts: list[str] = field(default_factory=list)  # verifier: the backup hosts whose snapshots it reads
    grants: dict = field(default_factory=dict)  # config_schema.GrantsSection: grant documents the audit judges
    #: the destinations of the lint-clean policy set this process loaded last (commands.common.load_policies),
    #: so that evidence finds its mirror without loading the policies again
    destinations: dict | None = field(default=None, repr=False, compare=False)

    @property
    def verifier(self) -> bool:
        """True in the read-only verifier role."""
        return self.role == "verifier"

    @property
    def maintenance(self) -> bool:
        """True in the maintenance role (the maintainer's keys; no writer keys)."""
        return self.role == "maintenance"

    def secrets_held(self) -> frozenset[str]:
        """Policy secret fields this role must be able to read to load its policies; files only another
        role (or only this role's audit) reads are not among them."""
        return credentials.LOAD[self.role]

    def backup_hosts(self) -> list[str]:
        """Host names whose snapshots restores, drills and manifests read: a verifier's `hosts` (default:
        the policy's site.host, set by the CLI), else this host's own name."""
        if self.verifier:
            return list(self.hosts)
        return [self.host] if self.host else []

    def policy_files(self) -> list[Path]:
        """The policy files the globs name, sorted; ConfigError when there are none."""
        found = sorted({Path(p) for pattern in self.policies for p in glob.glob(pattern)})
        if not found:
            where = f"{self.path}: policies: " if self.path else ""
            raise ConfigError(f"{where}no policy files match {', '.join(self.policies)}")
        return found


def default_path() -> Path:
    return Path(os.environ.get("BACKUPD_CONFIG") or DEFAULT_PATH)


def _read(path: Path):
    """(model, plain data, line map) of a valid backupd.yaml; ConfigError with file:line: field otherwise."""
    if not path.exists():
        raise ConfigError(f"{path}: config file not found (use --config or $BACKUPD_CONFIG)")
    return config_schema.parse(path, KEYS, SECTIONS)


def _not_a_directory(path: Path) -> str | None:
    """Why `path` cannot be (or become) a directory: it, or the nearest existing parent, is something else."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is not a directory" + ("" if probe == path else f", so {path} cannot be created")
    return None


def load(path: Path | None = None) -> Config:
    """Load backupd.yaml; relative paths are resolved against its directory."""
    path = Path(path) if path else default_path()
    model, data, lines = _read(path)
    base = path.resolve().parent
    cfg = Config(path=path)
    cfg.policies = [str(base / p) for p in model.policies]
    for key in ("state_dir", "secrets_dir", "restore_tests"):
        if getattr(model, key) is not None:
            setattr(cfg, key, base / getattr(model, key))
        problem = _not_a_directory(getattr(cfg, key)) if getattr(cfg, key) is not None else None
        if problem and key in data:
            lines.add((key,), problem)
    if model.hosts and model.role != "verifier":
        lines.add(("hosts",), "hosts is only used with role: verifier (a backup host reads its own snapshots)")
    if lines.findings:
        config_schema.raise_findings(lines)
    cfg.host = model.host
    cfg.restic = model.restic
    cfg.retry_attempts, cfg.retry_wait_seconds = model.retry_attempts, float(model.retry_wait_seconds)
    cfg.job_timeout_seconds = float(model.job_timeout_seconds)
    cfg.storage_timeout_seconds = float(model.storage_timeout_seconds)
    cfg.lock_wait_seconds = float(model.lock_wait_seconds)
    cfg.role, cfg.hosts = model.role, list(model.hosts or [])
    for key in SECTIONS:
        if data.get(key) is not None:
            setattr(cfg, key, dict(data[key]))
    return cfg
