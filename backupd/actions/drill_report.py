"""The operator's drill report: state_dir/reports/drills.html (0600), rewritten after every drill from
the drill records of the evidence ledger (rendering: backupd.render.drill_report)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from backupd.evidence.ledger import Ledger
from backupd.render import drill_report

#: The newest drills per target that the report (chart and list) shows.
KEEP = 200


def report_path(state_dir: Path) -> Path:
    return Path(state_dir) / "reports" / "drills.html"


def gather(state_dir: Path, policy_set) -> list[dict]:
    """Per target of the policy: its RTO and its drill records' data (with seq and time), oldest first."""
    with Ledger(state_dir) as ledger:
        records = ledger.query(kind="drill")
    out = []
    for target in policy_set.targets:
        drills = [{**rec["data"], "seq": rec["seq"], "time": rec["time"]} for rec in records
                  if isinstance(rec.get("data"), dict) and rec["data"].get("target") == target.name]
        out.append({"name": target.name, "rto_seconds": target.rto.total_seconds() if target.rto else None,
                    "drills": drills[-KEEP:]})
    return out


def write(cfg, policy_set, now: datetime | None = None) -> Path:
    """Render and atomically replace the report; returns its path."""
    path = report_path(cfg.state_dir)
    page = drill_report.render(cfg.host, now or datetime.now(timezone.utc), gather(cfg.state_dir, policy_set))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".drills-", suffix=".html", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(page)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
