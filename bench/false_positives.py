"""False positives of the ransomware detector on normal daily change of the demo terminal.

    python -m bench.false_positives [--days 30] [--containers 20000] [--json]

Brings up the local stack, backs up the shipped example policy once, then for each day applies
the demo terminal's normal daily change (new container events and gate transactions in the TOS
database, the nightly purge of gate transactions older than 90 days, appended and rotated logs,
touched configs, a program release every week) and backs up again, counting generations flagged as
suspect (false positives). The attack day then overwrites 80 % of the exports and programs with
random bytes, edits a server log in the middle and deletes 10 % of the container history: every
attacked target must be flagged (detections), and a second backup of the unchanged attacked state
must stay flagged (judged against the last clean generation).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from demo import tos_data, tos_files
from demo.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]


def backup(stack: LocalStack, config: Path) -> list[dict]:
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "backupd", "backup", "--json", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=900)
    results = json.loads(done.stdout)["results"]
    failed = [r["target"] for r in results if r["status"] != "ok"]
    if failed:
        raise SystemExit(f"backup failed for {failed}: {done.stdout[-2000:]}")
    return results


def encrypt(root: Path, share: float = 0.8) -> int:
    files = sorted(p for sub in ("exports", "programs") for p in (root / sub).rglob("*") if p.is_file())
    victims = random.Random(1).sample(files, int(len(files) * share))
    for path in victims:
        path.write_bytes(os.urandom(max(path.stat().st_size, 64)))
    return len(victims)


def edit_log(root: Path) -> str:
    """The attacker's edit in the middle of the biggest server log (same size: a covered-up line)."""
    victim = max((p for p in (root / "logs" / "server").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"#" * 16
    victim.write_bytes(bytes(data))
    return str(victim)


ATTACKED = ("tos-db", "tos-exports", "tos-programs-production", "tos-programs-development",
            "tos-programs-evaluation", "tos-server-logs")


def _suspects(results: list[dict]) -> list[str]:
    return sorted(r["target"] for r in results if r["facts"].get("change", {}).get("suspicious"))


def run(days: int, containers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="backupd-fp-") as tmp, \
            LocalStack(Path(tmp), containers=containers, lock_days=84, tree_scale=0.5) as stack:
        config = stack.write_config(ROOT / "policies")
        backup(stack, config)
        normal, flagged = 0, []
        for day in range(1, days + 1):
            tos_files.advance_day(stack.tos_root, day)
            tos_data.advance_day(stack.postgres, "tos", day)
            for r in backup(stack, config):
                normal += 1
                if r["facts"].get("change", {}).get("suspicious"):
                    flagged.append({"day": day, "target": r["target"], "flags": r["facts"]["change"]["flags"]})
        victims = encrypt(stack.tos_root)
        log = edit_log(stack.tos_root)
        stack.postgres.psql("DELETE FROM container_events WHERE id % 10 = 0;", db="tos")
        caught = _suspects(backup(stack, config))
        still = _suspects(backup(stack, config))
    detected = [t for t in ATTACKED if t in caught]
    return {"days": days, "generations": normal, "false_positives": len(flagged), "flagged": flagged,
            "false_positive_rate": round(len(flagged) / max(normal, 1), 4),
            "attack": {"files_encrypted": victims, "log_edited": log, "attacked_targets": list(ATTACKED),
                       "targets_flagged": caught, "detections": len(detected),
                       "flagged_again_next_backup": still}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--containers", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    doc = run(args.days, args.containers)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"{doc['generations']} normal generations over {doc['days']} days: "
              f"{doc['false_positives']} flagged (false-positive rate {doc['false_positive_rate']:.2%})")
        for f in doc["flagged"]:
            print(f"  day {f['day']} {f['target']}: {'; '.join(f['flags'])}")
        attack = doc["attack"]
        print(f"attack day: {attack['files_encrypted']} files encrypted, a server log edited, 10 % of the "
              f"container history deleted: {attack['detections']} of {len(attack['attacked_targets'])} attacked "
              f"targets flagged ({', '.join(attack['targets_flagged']) or 'NONE'})")
        print(f"next backup, nothing restored: flagged {', '.join(attack['flagged_again_next_backup']) or 'NONE'}")
    ok = doc["attack"]["detections"] == len(ATTACKED) and not doc["false_positives"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
