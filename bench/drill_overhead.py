"""What a small full drill spends outside restore, verify and probes.

    python -m bench.drill_overhead [--rounds 3] [--size-mb 5] [--against SRC] [--workdir DIR] [--json]

A deterministic data set of --size-mb MiB (40 small text files, the rest in four binary files) is
backed up twice (one file changed in between) to a fresh SeaweedFS Object-Lock bucket with the real
CLI; then `backupd drill --target data --full --json` runs --rounds times. Per round: the CLI's wall
time (interpreter start-up to exit), the drill's phases from its JSON (select, restore, verify,
probes) and what is left outside restore, verify and probes (wall - restore - verify - probes:
start-up and imports, config and policy load, select, sandbox, evidence, the drill report). The
table shows every round and the median. `--against SRC` also drills with the backupd package found in
SRC (e.g. an older commit: `git archive <commit> backupd | tar -x -C SRC`) in every round, the order
alternating, against the same snapshot: a before/after in one window of this shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.backup_vs_restic import BenchError, run_bench
from bench.drill_vs_restic import BUCKET, ROOT, Setup
from bench.drill_vs_restic import DATA_TARGET as TARGET

PHASES = ("select", "restore", "verify", "probes")


def make_data(root: Path, size_mb: float, seed: int = 14) -> int:
    """size_mb MiB under root: 40 small text files (1-8 KiB), the rest in 4 random files; returns bytes."""
    rng = random.Random(seed)
    shutil.rmtree(root, ignore_errors=True)
    (root / "etc").mkdir(parents=True)
    (root / "srv").mkdir()
    total = int(size_mb * (1 << 20))
    written = 0
    for i in range(40):
        size = rng.randint(1 << 10, 8 << 10)
        (root / "etc" / f"tos-{i:02d}.conf").write_bytes(rng.randbytes(size // 2).hex().encode()[:size])
        written += size
    rest = max(total - written, 4)
    for i in range(4):
        size = rest // 4 + (rest % 4 if i == 3 else 0)
        (root / "srv" / f"blob-{i}.bin").write_bytes(rng.randbytes(size))
    return written + rest


def one_round(setup: Setup, src: Path = ROOT) -> dict:
    """One `backupd drill --target data --full --json` with the backupd package in src, timed."""
    argv = [sys.executable, "-m", "backupd", "drill", "--target", "data", "--full", "--config", str(setup.config),
            "--json"]
    t0 = time.monotonic()
    done = subprocess.run(argv, env={**setup.env, "PYTHONPATH": str(src)}, cwd=src, capture_output=True,
                          timeout=600)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise BenchError(f"drill ({src}): exit {done.returncode}: {done.stderr.decode(errors='replace')[-300:]}")
    (d,) = json.loads(done.stdout)["drills"]
    if d["verdict"] != "PASS":
        raise BenchError(f"drill: {d['verdict']}: {d.get('reason')}")
    phases = {p: d["phases"].get(p, 0.0) for p in PHASES}
    inside = phases["restore"] + phases["verify"] + phases["probes"]
    return {"wall": round(seconds, 3), **phases, "outside": round(seconds - inside, 3),
            "other": round(seconds - sum(phases.values()), 3), "files": d["files_restored"]}


def benchmark(size_mb: float, rounds: int, workdir: Path, log=print, against: Path | None = None) -> dict:
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="overhead-", dir=workdir))
    secrets, fillers, data = run_dir / "secrets", run_dir / "filler", run_dir / "data"
    fillers.mkdir()
    (fillers / "README").write_text("filler target: only here so the policy lints clean\n")
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    size = make_data(data, size_mb)
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=[BUCKET]) as seaweed:
            seaweed.create_locked_bucket(BUCKET, days=1)
            setup = Setup(run_dir, "drill", seaweed.endpoint, secrets, TARGET.format(data=data), fillers)
            for n in (1, 2):  # two generations: select reads a history, not a single snapshot
                if n == 2:
                    (data / "etc" / "tos-00.conf").write_bytes(b"changed for the second generation\n")
                _, doc = setup.cli("backup", "--target", "data")
                if doc["results"][0]["status"] != "ok":
                    raise BenchError(f"backup {n}: {doc['results'][0].get('error')}")
            samples, before = [], []
            for n in range(rounds):
                order = [ROOT, against] if against and n % 2 else [against, ROOT] if against else [ROOT]
                for src in order:
                    (samples if src == ROOT else before).append(one_round(setup, src))
                log(f"round {n + 1}: " + "  ".join(f"{k} {v:.2f}s" for k, v in samples[-1].items() if k != "files"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    doc = {"bytes": size, "files": samples[0]["files"], "rounds": samples, "median": _median(samples),
           "cpus": os.cpu_count()}
    if against:
        doc["against"] = {"src": str(against), "rounds": before, "median": _median(before)}
    return doc


def _median(samples: list[dict]) -> dict:
    return {k: round(statistics.median(s[k] for s in samples), 3) for k in ("wall", *PHASES, "outside", "other")}


def print_report(doc: dict) -> None:
    keys = ("wall", *PHASES, "outside", "other")
    print(f"full drill of {doc['files']} files, {doc['bytes'] / (1 << 20):.1f} MiB, two generations; "
          f"{doc['cpus']} CPUs; seconds")
    runs = [("this tree", doc)] + ([(f"against {doc['against']['src']}", doc["against"])]
                                   if doc.get("against") else [])
    for label, part in runs:
        if len(runs) > 1:
            print(label)
        print(f"{'round':<8}" + "".join(f"{k:>9}" for k in keys))
        for n, s in enumerate(part["rounds"], 1):
            print(f"{n:<8}" + "".join(f"{s[k]:9.2f}" for k in keys))
        print(f"{'median':<8}" + "".join(f"{part['median'][k]:9.2f}" for k in keys))
    print("outside = wall - restore - verify - probes (start-up, config, select, sandbox, evidence, report); "
          "other = outside - select")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.drill_overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="drills to run (default 3)")
    ap.add_argument("--size-mb", type=float, default=5.0, help="data set size in MiB (default 5)")
    ap.add_argument("--against", type=Path, default=None,
                    help="also drill with the backupd package in this directory (before/after, alternating)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = ap.parse_args(argv)
    if not 1 <= args.rounds <= 15 or not 0.1 <= args.size_mb <= 1024:
        ap.error("--rounds within 1..15, --size-mb within 0.1..1024")
    if args.against and not (args.against / "backupd" / "__main__.py").is_file():
        ap.error(f"--against {args.against}: no backupd package there")
    against = args.against.resolve() if args.against else None
    return run_bench(args.json, lambda log: benchmark(args.size_mb, args.rounds, args.workdir.resolve(), log, against),
                     print_report)


if __name__ == "__main__":
    sys.exit(main())
