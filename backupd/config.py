"""The daemon's own configuration file (backupd.yaml): where policies, state and secrets live.

```yaml
policies: [/etc/backupd/policies/*.yaml]   # globs; relative ones are relative to this file
state_dir: /var/lib/backupd
secrets_dir: /etc/backupd/secrets
host: tos-01                               # optional; default: the policy site.host, else the hostname
restic: restic                             # optional path of the restic binary
retry_attempts: 3                          # tries when the storage is unreachable
retry_wait_seconds: 10                     # wait before the 2nd try (x2 before the 3rd, ...)
```
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from backupd.errors import ConfigError

DEFAULT_PATH = Path("/etc/backupd/backupd.yaml")
KEYS = {"policies", "state_dir", "secrets_dir", "host", "restic", "retry_attempts", "retry_wait_seconds",
        "daemon", "notify", "metrics", "restore_tests", "evidence"}
#: Sections validated by their own modules (backupd.daemon.settings, backupd.notify, backupd.metrics).
SECTIONS = ("daemon", "notify", "metrics", "evidence")
MAX_BYTES = 256 * 1024


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
    daemon: dict = field(default_factory=dict)
    notify: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    evidence: dict = field(default_factory=dict)  # backupd.evidence.settings: mirror destination, audit period
    restore_tests: Path | None = None  # drill specs; default: restore_tests/ beside the policies' directory

    def policy_files(self) -> list[Path]:
        """The policy files the globs name, sorted; ConfigError when there are none."""
        found = sorted({Path(p) for pattern in self.policies for p in glob.glob(pattern)})
        if not found:
            raise ConfigError(f"no policy files match {', '.join(self.policies)}")
        return found


def default_path() -> Path:
    return Path(os.environ.get("BACKUPD_CONFIG") or DEFAULT_PATH)


def _read(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES} bytes; not a backupd config")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or $BACKUPD_CONFIG)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.__class__.__name__}") from None
    try:
        data = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise ConfigError(f"{path}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    unknown = set(data) - KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    return data


def load(path: Path | None = None) -> Config:
    """Load backupd.yaml; relative paths are resolved against its directory."""
    path = Path(path) if path else default_path()
    data = _read(path)
    base = path.resolve().parent
    cfg = Config(path=path)
    if "policies" in data:
        items = data["policies"] if isinstance(data["policies"], list) else [data["policies"]]
        cfg.policies = [str(base / str(p)) for p in items]
    for key in ("state_dir", "secrets_dir", "restore_tests"):
        if key in data:
            setattr(cfg, key, base / str(data[key]))
    if data.get("host"):
        cfg.host = str(data["host"])
    if data.get("restic"):
        cfg.restic = str(data["restic"])
    for key, kind in (("retry_attempts", int), ("retry_wait_seconds", float)):
        if key in data:
            try:
                setattr(cfg, key, kind(data[key]))
            except (TypeError, ValueError):
                raise ConfigError(f"{path}: {key} must be a number") from None
    for key in SECTIONS:
        if data.get(key) is not None:
            if not isinstance(data[key], dict):
                raise ConfigError(f"{path}: {key} must be a mapping")
            setattr(cfg, key, dict(data[key]))
    return cfg
