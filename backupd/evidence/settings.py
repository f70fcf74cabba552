"""The `evidence:` section of backupd.yaml.

```yaml
evidence:
  mirror: worm-primary     # policy destination (S3, Object Lock) that receives every record under evidence/<host>/
  audit_period: 1y         # default --since of `evidence export` (a duration back from now)
  credentials_file: s3-evidence.env   # keys that write the mirror (default: the destination's credentials_file);
                                      # a verifier's may only add objects under evidence/<its host>/
  checkpoint_period: 1h    # push a signed checkpoint of the ledger head to the mirror at least this often
  keyring: keyring.yaml    # default --keyring of `evidence export` (relative -> beside backupd.yaml)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from backupd.errors import ConfigError
from backupd.policy.durations import parse_duration

KEYS = {"mirror", "audit_period", "credentials_file", "checkpoint_period", "keyring"}


@dataclass
class EvidenceSettings:
    mirror: str | None = None
    audit_period: timedelta = timedelta(days=365)
    credentials_file: Path | None = None  # relative -> secrets_dir
    checkpoint_period: timedelta = timedelta(hours=1)
    keyring: Path | None = None  # relative -> the config file's directory


def of(cfg) -> EvidenceSettings:
    """Validated settings from cfg.evidence; ConfigError naming the bad key."""
    raw = getattr(cfg, "evidence", None) or {}
    unknown = set(raw) - KEYS
    if unknown:
        raise ConfigError(f"evidence: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    out = EvidenceSettings()
    if raw.get("mirror") is not None:
        out.mirror = str(raw["mirror"])
    if raw.get("credentials_file") is not None:
        out.credentials_file = Path(getattr(cfg, "secrets_dir", ".")) / str(raw["credentials_file"])
    if raw.get("keyring") is not None:
        base = Path(cfg.path).parent if getattr(cfg, "path", None) else Path(".")
        out.keyring = base / str(raw["keyring"])
    for name in ("audit_period", "checkpoint_period"):
        if raw.get(name) is not None:
            try:
                setattr(out, name, parse_duration(raw[name]))
            except ValueError as exc:
                raise ConfigError(f"evidence.{name}: {exc}") from None
    return out
