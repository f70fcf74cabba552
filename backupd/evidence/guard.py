"""Head-regression guard: a ledger that lost records (truncated, rolled back, replaced) stops appends.

The ledger's last record is compared, under the append lock, with what this host remembers about
it: the SQLite index (every seq and line hash ever appended), the highest seq confirmed in the WORM
mirror and the last signed checkpoint. The WORM mirror itself is consulted by `mirror.probe` (does
the next seq already exist there?) and by every upload (an object with other content is refused).

A regression is a finding: it is written to `state_dir/evidence/regression.json`, which the daemon
turns into an alert, and every later append is refused (`LedgerRegression`, exit 1) until an operator
restores the ledger from the mirror and runs `backupd evidence acknowledge`, which records it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from backupd.errors import Finding
from backupd.evidence import canonical, checkpoint

log = logging.getLogger(__name__)
FINDING_NAME = "regression.json"
ADVICE = ("appends are refused until the ledger is restored from the WORM mirror (backupd evidence pull) and "
          "`backupd evidence acknowledge --reason TEXT` records the repair")


class LedgerRegression(Finding):
    """The ledger lost records or was replaced; no record may be appended to it."""


def finding_path(evidence_dir: Path) -> Path:
    return Path(evidence_dir) / FINDING_NAME


def open_finding(evidence_dir: Path) -> dict | None:
    """The open regression finding ({time, reasons, source}) or None."""
    try:
        doc = json.loads(finding_path(evidence_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"time": None, "reasons": [f"{FINDING_NAME} is unreadable"], "source": "unknown"}
    return doc if isinstance(doc, dict) else {"time": None, "reasons": [str(doc)], "source": "unknown"}


def refuse_if_open(evidence_dir: Path) -> None:
    found = open_finding(evidence_dir)
    if found:
        raise LedgerRegression(f"evidence ledger head regression found at {found.get('time')}: "
                               f"{'; '.join(map(str, found.get('reasons') or []))}; {ADVICE}")


def refuse(evidence_dir: Path, reasons: list[str], source: str) -> None:
    """Persist the finding (first one wins: later ones are consequences) and raise it."""
    path = finding_path(evidence_dir)
    if not path.exists():
        doc = {"time": canonical.utc_now(), "reasons": reasons, "source": source}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    log.error("evidence ledger head regression (%s): %s", source, "; ".join(reasons))
    raise LedgerRegression(f"evidence ledger head regression: {'; '.join(reasons)}; {ADVICE}")


def clear(evidence_dir: Path) -> None:
    finding_path(evidence_dir).unlink(missing_ok=True)


def head_problems(index, evidence_dir: Path, handle, last_seq: int, last_hash: str | None) -> list[str]:
    """Why the ledger whose last record is (last_seq, last_hash) lost records; [] when it did not."""
    problems = []
    mirrored, indexed = index.last_mirrored(), index.last_seq()
    ends = f"the ledger ends at seq {last_seq}"
    if mirrored > last_seq:
        problems.append(f"{ends} but seq {mirrored} was already mirrored to WORM storage (records cut off or the "
                        f"ledger rolled back)")
    elif indexed > last_seq:
        problems.append(f"{ends} but its index holds records up to seq {indexed} (records cut off or the ledger "
                        f"rolled back)")
    row = index.row(last_seq) if last_seq else None
    if row and row[2] and last_hash and row[2] != last_hash:
        problems.append(f"record {last_seq} is not the record indexed when it was appended (ledger replaced)")
    cp = checkpoint.load_local(evidence_dir)
    if cp and cp["seq"] > last_seq:
        problems.append(f"{ends} but the last signed checkpoint ({cp['time']}) covers seq {cp['seq']}")
    elif cp and _line_hash_at(index, handle, cp["seq"]) not in (None, cp["head"]):
        problems.append(f"record {cp['seq']} differs from the last signed checkpoint ({cp['time']}): the ledger "
                        f"was replaced or re-signed")
    return problems


def _line_hash_at(index, handle, seq: int) -> str | None:
    row = index.row(seq)
    if row is None:
        return None
    handle.seek(row[0])
    return canonical.sha256(handle.read(row[1]).rstrip(b"\n"))
