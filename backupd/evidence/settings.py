"""The `evidence:` section of backupd.yaml.

```yaml
evidence:
  mirror: worm-primary     # policy destination (S3, Object Lock) that receives every record under evidence/<host>/
  audit_period: 1y         # default --since of `evidence export` (a duration back from now)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from backupd.errors import ConfigError
from backupd.policy.durations import parse_duration

KEYS = {"mirror", "audit_period"}


@dataclass
class EvidenceSettings:
    mirror: str | None = None
    audit_period: timedelta = timedelta(days=365)


def of(cfg) -> EvidenceSettings:
    """Validated settings from cfg.evidence; ConfigError naming the bad key."""
    raw = getattr(cfg, "evidence", None) or {}
    unknown = set(raw) - KEYS
    if unknown:
        raise ConfigError(f"evidence: unknown key(s): {', '.join(sorted(map(str, unknown)))}")
    out = EvidenceSettings()
    if raw.get("mirror") is not None:
        out.mirror = str(raw["mirror"])
    if raw.get("audit_period") is not None:
        try:
            out.audit_period = parse_duration(raw["audit_period"])
        except ValueError as exc:
            raise ConfigError(f"evidence.audit_period: {exc}") from None
    return out
