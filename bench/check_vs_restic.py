"""One `backupd check` slice against raw `restic check --read-data-subset` of the same slice.

    python -m bench.check_vs_restic [--size-gb 1.0] [--rounds 3] [--workdir DIR] [--json]

One run starts SeaweedFS (Object-Lock bucket) on 127.0.0.1, backs the deterministic data set
(bench/dataset.py) up once with backupd, and then, per round in alternating order, times
`backupd check --daily-budget 64GiB --json` (the real CLI: one slice, 1/1 for a repository under the
budget, so every pack is read) and `restic check --read-data-subset=1/1` on the same repository with the
same identity. A first, untimed `backupd check` measures the repository's size, as a site's first check
does (it is measured again weekly). Prints seconds, throughput (repository bytes per second) and the
throughput ratio backupd / raw per round and the median (aim >= 0.9).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.backup_vs_restic import BenchError, Round, _base_env, run_step, sized_main
from bench.dataset import generate

AIM = 0.9
BUCKET = "bench"


def _checks(rnd: Round, seaweed, secrets: Path) -> tuple[dict, dict]:
    """(raw restic env, backupd argv) for the round's backupd repository."""
    env = {**_base_env(), **seaweed.env_for("writer"),
           "RESTIC_REPOSITORY": f"s3:{seaweed.endpoint}/{BUCKET}/backupd-{rnd.number}",
           "RESTIC_PASSWORD_FILE": str(secrets / "restic-password"), "RESTIC_CACHE_DIR": str(rnd.dir / "raw-cache")}
    argv = [sys.executable, "-m", "backupd", "check", "--daily-budget", "64GiB", "--config", str(rnd.config), "--json"]
    return env, argv


def _backupd_check(rnd: Round, argv: list[str]) -> tuple[float, dict]:
    seconds, out = run_step(argv, rnd.cli_env, f"round {rnd.number}: backupd check", rnd.log)
    (result,) = json.loads(out)["results"]
    if result["status"] != "ok" or result["slice"] != "1/1":
        raise BenchError(f"round {rnd.number}: backupd check: {result.get('status')} {result.get('slice')}: "
                         f"{result.get('error')}")
    return seconds, result


def benchmark(size_gb: float, workdir: Path, rounds: int, log=print) -> dict:
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    dataset = generate(workdir / "data", size_gb)
    run_dir = Path(tempfile.mkdtemp(prefix="check-", dir=workdir))
    secrets, fillers = run_dir / "secrets", run_dir / "filler"
    fillers.mkdir()
    (fillers / "README").write_text("filler target: only here so the policy lints clean\n")
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    rows = []
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=[BUCKET]) as seaweed:
            seaweed.create_locked_bucket(BUCKET, days=1)
            rnd = Round(1, run_dir, seaweed, workdir / "data", secrets, fillers)
            rnd.init()
            rnd.backupd("first")
            env, argv = _checks(rnd, seaweed, secrets)
            _, first = _backupd_check(rnd, argv)  # measures the size, as a site's first check does
            size = first["repository_bytes"]
            log(f"repository: {size / 2**20:.0f} MiB after one backup of {dataset['files']} files")
            for n in range(1, rounds + 1):
                order = ["raw", "backupd"] if n % 2 else ["backupd", "raw"]
                row = {"round": n, "order": order}
                for tool in order:
                    if tool == "raw":
                        row["raw"], _ = run_step(["restic", "check", "--read-data-subset=1/1"], env,
                                                 f"round {n}: restic check", rnd.log)
                    else:
                        row["backupd"], _ = _backupd_check(rnd, argv)
                row["ratio"] = row["raw"] / row["backupd"]  # throughput backupd / raw on the same bytes
                log(f"round {n}: raw {row['raw']:.2f}s  backupd {row['backupd']:.2f}s  throughput ratio "
                    f"{row['ratio']:.3f}")
                rows.append(row)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rows) for k in ("raw", "backupd", "ratio")}
    return {"dataset": dataset, "repository_bytes": size, "rounds": rows, "median": med, "aim": AIM,
            "load_average": os.getloadavg(), "total_seconds": round(time.monotonic() - t0, 1)}


def print_table(doc: dict) -> None:
    size = doc["repository_bytes"]
    print(f"{'round':<7}{'order':<14}{'raw s':>8}{'backupd s':>11}{'raw MB/s':>10}{'backupd MB/s':>14}{'ratio':>8}")
    for r in doc["rounds"] + [{"round": "median", "order": [], **doc["median"]}]:
        print(f"{r['round']!s:<7}{'>'.join(r['order']):<14}{r['raw']:>8.2f}{r['backupd']:>11.2f}"
              f"{size / r['raw'] / 1e6:>10.1f}{size / r['backupd'] / 1e6:>14.1f}{r['ratio']:>8.3f}")
    verdict = "met" if doc["median"]["ratio"] >= doc["aim"] else "MISSED"
    print(f"\nthroughput backupd / raw restic: {doc['median']['ratio']:.3f} (aim >= {doc['aim']}, {verdict}); "
          f"repository {size / 2**20:.0f} MiB; load average at the end {doc['load_average'][0]:.2f}; "
          f"total {doc['total_seconds']}s")


def main(argv: list[str] | None = None) -> int:
    return sized_main(argv, "bench.check_vs_restic", __doc__, rounds=3, repositories="repository is",
                      benchmark=benchmark, render=print_table)


if __name__ == "__main__":
    sys.exit(main())
