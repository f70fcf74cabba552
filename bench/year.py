"""A year of history at flat cost: how status, snapshot selection and the other daily commands scale
with the number of generations kept.

    .venv/bin/python -m bench.year [--days 365] [--every 1] [--containers 2000] [--json]

Brings up the local stack (SeaweedFS with Object Lock, PostgreSQL with the TOS database) and simulates
`--days` days of three small targets with the shipped example policy's retention (policies/terminal.yaml):
`files` (the TOS exports, retention of tos-exports), `logs` (the server logs, of tos-server-logs,
min_history 12w) and `db` (a pg_dump of the TOS database, of tos-db, min_history 6w). Each simulated day
applies the demo terminal's normal daily change, backs up the three targets once (`backupd backup`),
applies retention (`backupd forget`) and, every seventh day, prunes (`backupd prune`, the maintainer keys);
every 30th day (the `files` drill spec's sample schedule) it runs `backupd drill --target files`, as the
daemon would: a restore picks the newest snapshot that passed a drill, and one must survive retention.
`--every N` backs up and forgets only every Nth simulated day (the data still changes daily), for a
year within the time a shared machine allows: fewer generations than the policy's frequency, but the
weekly and monthly keep rules and the min_history guard are exercised all the same. The daily backup,
forget and prune run in the bench's own process (`Bench.daily`: the same CLI commands and restic
invocations, without a Python start-up per call); the checkpoint figures below are child processes.

Snapshots are backdated with restic --time through BACKUPD_BACKUP_TIME (read by backupd/engine/backup.py
only). The clock is shifted so that the last simulated day is today: forget refuses snapshots dated in the
future, and restic's --keep-within (the min_history guard) counts back from the newest snapshot of the
group, so day d is dated now - (days - d) days and every forget sees the same history a real host would.
State and evidence records carry the real time at which the bench wrote them.

At days 7, 30, 90, 180 and 365 (those <= --days) it prints the wall time of `backupd status`, of the
snapshot selection of a restore of `files` (in process: one listing, flagged generations, drilled
snapshots, choice and manifest load, exactly the select phase of `backupd restore`), of `backupd drill
--full --target files`, one `backupd check` slice, `backupd evidence export` and `backupd audit storage`,
and the bucket's bytes in current and noncurrent object versions (list_object_versions, admin keys).
Status and selection are the median of three runs.
Exit 0 when status and selection at the last checkpoint are within 1.5x of day 7, else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from demo import tos_data, tos_files
from demo.stack import HOST, LocalStack

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = (7, 30, 90, 180, 365)
GOAL = 1.5
REPEAT = 3
#: the `files` drill spec's sample schedule (restore_tests/files.yaml): restore picks only drilled snapshots,
#: and without a drill between checkpoints 30 and 90 retention would have forgotten every drilled one
DRILL_EVERY = 30
TIME_OVERRIDE = "BACKUPD_BACKUP_TIME"  # backupd.engine.backup.TIME_OVERRIDE

POLICY = """version: 1
site: {{name: Year Bench Terminal, port: other}}
destinations:
  worm:
    kind: s3
    endpoint: {endpoint}
    bucket: {bucket}
    path: year
    object_lock: true
    credentials_file: s3-writer.env
    maintainer_credentials_file: s3-maintainer.env
    canary_credentials_file: s3-canary.env
    password_file: restic-password
targets:
  - name: files
    category: container_data
    owner: bench
    sources: {{paths: ['{root}/exports']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 14, keep_weekly: 8, keep_monthly: 12}}
    drill: files
    destinations: [worm]
  - name: logs
    category: logs
    source: server
    owner: bench
    sources: {{paths: ['{root}/logs/server']}}
    frequency: 1d
    retention: {{keep_hourly: 48, keep_daily: 30, keep_weekly: 12, keep_monthly: 12, min_history: 12w}}
    destinations: [worm]
  - name: db
    category: container_data
    owner: bench
    sources:
      dump: {{kind: pg_dump, database: tos, host: '{pghost}', port: {pgport}, user: '{pguser}'}}
    frequency: 1d
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 14, keep_weekly: 8, keep_monthly: 6, min_history: 6w}}
    destinations: [worm]
  - name: programs
    category: system_program
    environment: development
    owner: bench
    sources: {{paths: ['{root}/programs/development/etc']}}
    frequency: 1w
    retention: {{keep_weekly: 8}}
    destinations: [worm]
"""


class Bench:
    """The stack, a config for the bench policy, and the CLI run against it."""

    def __init__(self, stack: LocalStack, workdir: Path):
        self.stack = stack
        pdir = workdir / "policies"
        pdir.mkdir()
        env = stack.env
        (pdir / "year.yaml").write_text(POLICY.format(
            endpoint=env["BACKUPD_S3_ENDPOINT"], bucket=stack.bucket, root=env["TOS_ROOT"],
            pghost=env["TOS_PGHOST"], pgport=env["TOS_PGPORT"], pguser=env["TOS_PGUSER"]))
        self.config = workdir / "backupd.yaml"
        q = json.dumps
        self.config.write_text(f"policies: [{q(str(pdir / '*.yaml'))}]\nstate_dir: {q(str(stack.state_dir))}\n"
                               f"secrets_dir: {q(str(stack.secrets_dir))}\nhost: {HOST}\n"
                               f"restore_tests: {q(str(ROOT / 'restore_tests'))}\n")
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.out = workdir

    def cli(self, *args: str, when: str | None = None, ok=(0,)) -> tuple[float, dict]:
        """(seconds, JSON document) of one `backupd ARGS --json`; exits the bench on an unexpected code."""
        env = dict(self.env, **({TIME_OVERRIDE: when} if when else {}))
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "backupd", *args, "--json", "--config", str(self.config)],
                              env=env, capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - t0
        if done.returncode not in ok:
            raise SystemExit(f"backupd {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-3000:]}")
        return took, (json.loads(done.stdout) if done.stdout.strip() else {})

    def daily(self, *args: str, when: str | None = None) -> float:
        """Seconds of one daily `backupd ARGS --json` (backup, forget, prune) run in this process: the same
        command and restic invocations, without a Python start-up and its imports per call (about 1 s on
        the loaded machine, twice a day). The checkpoint commands stay child processes."""
        from backupd.cli import main as backupd

        os.environ.update(self.env, **({TIME_OVERRIDE: when} if when else {}))
        out, err = io.StringIO(), io.StringIO()
        t0 = time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                backupd.main([*args, "--json", "--config", str(self.config)], prog_name="backupd")
            code = 0
        except SystemExit as exc:  # every command ends in sys.exit(code)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        finally:
            os.environ.pop(TIME_OVERRIDE, None)
        if code != 0:
            raise SystemExit(f"backupd {' '.join(args)} exited {code}:\n{out.getvalue()[-3000:]}\n"
                             f"{err.getvalue()[-3000:]}")
        return time.monotonic() - t0

    def select(self) -> tuple[float, int]:
        """(seconds, data snapshots seen) of the select phase of `backupd restore --target files`."""
        from backupd.actions.common import repository
        from backupd.actions.restore import drilled_snapshots
        from backupd.actions.snapshot_choice import choose, data_snapshots, flagged, load_manifest, target_listing
        from backupd.commands.common import load_config, load_policies

        os.environ.update(self.stack.env)
        cfg = load_config(self.config)
        policy_set = load_policies(cfg)
        target = policy_set.target("files")
        repo = repository(cfg, "worm", policy_set.destinations["worm"])
        t0 = time.monotonic()
        hosts = cfg.backup_hosts()
        listing = target_listing(repo, target.name, hosts)
        snaps = data_snapshots(repo, target.name, hosts, listing)
        snap, _why = choose(snaps, None, None, flagged(repo, snaps, target.name, hosts, listing),
                            drilled_snapshots(cfg, target.name))
        load_manifest(repo, snap, target.name, hosts, listing)
        return time.monotonic() - t0, len(snaps)

    def bucket_bytes(self) -> dict[str, int]:
        """Bytes and counts of current and noncurrent object versions, and delete markers, in the bucket."""
        s3 = self.stack.seaweed.client("admin")
        out = {"current_bytes": 0, "noncurrent_bytes": 0, "current_objects": 0, "noncurrent_objects": 0,
               "delete_markers": 0}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=self.stack.bucket, Prefix="year/"):
            for v in page.get("Versions", []):
                kind = "current" if v.get("IsLatest") else "noncurrent"
                out[f"{kind}_bytes"] += v.get("Size", 0)
                out[f"{kind}_objects"] += 1
            out["delete_markers"] += len(page.get("DeleteMarkers", []))
        return out

    def measure(self, day: int) -> dict:
        """Every figure of one checkpoint."""
        row = {"day": day}
        # the goal's two figures: the median of REPEAT runs, the shared machine's load varies by seconds
        row["status_s"] = statistics.median(self.cli("status", ok=(0, 1))[0] for _ in range(REPEAT))
        picks = [self.select() for _ in range(REPEAT)]
        row["select_s"], row["data_snapshots_files"] = statistics.median(p[0] for p in picks), picks[0][1]
        row["drill_full_s"], drill = self.cli("drill", "--full", "--target", "files", ok=(0, 1))
        row["check_s"], _ = self.cli("check", "--days", "30", ok=(0, 1))
        bundle = self.out / f"evidence-{day}.tar.gz"
        row["evidence_export_s"], _ = self.cli("evidence", "export", "--out", str(bundle), ok=(0, 1))
        bundle.unlink(missing_ok=True)
        row["audit_storage_s"], _ = self.cli("audit", "storage", ok=(0, 1))
        row["drill_status"] = [r.get("status") for r in drill.get("results", [drill])][:1]
        row.update(self.bucket_bytes())
        return row


def day_time(start: datetime, days: int, day: int) -> str:
    """restic --time (local time) of simulated day `day`: the last day is one hour before the bench began."""
    return (start - timedelta(days=days - day, hours=1)).strftime("%Y-%m-%d %H:%M:%S")


def run(days: int, containers: int, every: int = 1, echo=print) -> dict:
    rows, started = [], time.monotonic()
    with tempfile.TemporaryDirectory(prefix="backupd-year-") as tmp, \
            LocalStack(Path(tmp) / "stack", containers=containers, tree_scale=0.1) as stack:
        bench = Bench(stack, Path(tmp))
        start = datetime.now()
        backups = forgets = prunes = drills = 0.0
        for day in range(1, days + 1):
            if day > 1:
                tos_files.advance_day(stack.tos_root, day)
                tos_data.advance_day(stack.postgres, "tos", day)
            if day % every == 0 or day in CHECKPOINTS or day == days:
                backups += bench.daily("backup", when=day_time(start, days, day))
                forgets += bench.daily("forget")
            if day % 7 == 0:
                prunes += bench.daily("prune")
            if day % DRILL_EVERY == 0 and day not in CHECKPOINTS:
                drills += bench.cli("drill", "--target", "files")[0]
            if day in CHECKPOINTS or day == days:
                rows.append(bench.measure(day))
                echo(format_row(rows[-1]), flush=True)
    return {"days": days, "every": every, "rows": rows, "backup_s": round(backups, 1), "forget_s": round(forgets, 1),
            "prune_s": round(prunes, 1), "drill_s": round(drills, 1), "wall_s": round(time.monotonic() - started, 1),
            "goal": verdict(rows)}


def verdict(rows: list[dict]) -> dict:
    """status and selection at the last checkpoint against day 7 (or the first checkpoint)."""
    first, last = rows[0], rows[-1]
    ratios = {k: round(last[k] / first[k], 2) for k in ("status_s", "select_s")}
    return {"from_day": first["day"], "to_day": last["day"], "ratios": ratios,
            "met": all(r <= GOAL for r in ratios.values())}


def format_row(r: dict) -> str:
    mib = 1 << 20
    return (f"day {r['day']:>3}: status {r['status_s']:.2f} s, select {r['select_s']:.2f} s "
            f"({r['data_snapshots_files']} snapshots of files), drill --full {r['drill_full_s']:.2f} s, "
            f"check {r['check_s']:.2f} s, evidence export {r['evidence_export_s']:.2f} s, "
            f"audit storage {r['audit_storage_s']:.2f} s; bucket {r['current_bytes'] / mib:.1f} MiB current "
            f"({r['current_objects']} objects), {r['noncurrent_bytes'] / mib:.1f} MiB noncurrent "
            f"({r['noncurrent_objects']}), {r['delete_markers']} delete markers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--every", type=int, default=1, help="back up and forget every Nth simulated day")
    parser.add_argument("--containers", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.days < 1 or args.every < 1:
        parser.error("--days and --every must be at least 1")
    doc = run(args.days, args.containers, args.every, echo=(lambda *a, **k: None) if args.json else print)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        g = doc["goal"]
        print(f"{doc['days']} days (a generation every {doc['every']} day(s)) in {doc['wall_s']:.0f} s (backup {doc['backup_s']:.0f} s, forget "
              f"{doc['forget_s']:.0f} s, prune {doc['prune_s']:.0f} s, sample drills {doc['drill_s']:.0f} s); day {g['to_day']} vs day {g['from_day']}: "
              f"status x{g['ratios']['status_s']}, select x{g['ratios']['select_s']} "
              f"({'within' if g['met'] else 'NOT within'} {GOAL}x)")
    return 0 if doc["goal"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
