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

from backupd import config_schema
from backupd.policy.durations import parse_duration


@dataclass
class EvidenceSettings:
    mirror: str | None = None
    audit_period: timedelta = timedelta(days=365)
    credentials_file: Path | None = None  # relative -> secrets_dir
    checkpoint_period: timedelta = timedelta(hours=1)
    keyring: Path | None = None  # relative -> the config file's directory


def of(cfg) -> EvidenceSettings:
    """Typed settings from cfg.evidence; ConfigError naming the bad field (schema: backupd.config_schema)."""
    raw = config_schema.section("evidence", getattr(cfg, "evidence", None) or {})
    out = EvidenceSettings(mirror=raw.mirror, audit_period=parse_duration(raw.audit_period),
                           checkpoint_period=parse_duration(raw.checkpoint_period))
    if raw.credentials_file is not None:
        out.credentials_file = Path(getattr(cfg, "secrets_dir", ".")) / raw.credentials_file
    if raw.keyring is not None:
        base = Path(cfg.path).parent if getattr(cfg, "path", None) else Path(".")
        out.keyring = base / raw.keyring
    return out
