"""Does a drill's projection hold? Projected against measured time to service-ready.

    python -m bench.projection [--containers 100000,300000,1000000] [--sizes-gb 0.1,0.25,0.5]
                               [--only files|database] [--format plain|custom] [--repeat N] [--no-settle]
                               [--workdir DIR] [--json]

Files: per size, the deterministic data set (bench/dataset.py) backed up into a SeaweedFS Object-Lock
bucket, then a sample drill (at most 200 files / 32 MiB restored; its projection of the full drill) and
a full drill of the same snapshot (measured). Error = (projected - measured) / measured.

Database: the TOS database (demo/tos_data.py; kept per size in DIR/tos-source, bench/tosdb.py) at each
--containers size, backed up as a --format dump (plain, the default, or custom) and drilled: one sample
drill (a dump is one file: the whole of it) and --repeat full drills, the row being their median. Each
size is then projected from the drills of the other sizes, as `backupd status` would project it with
those in its history (backupd.drill.projection.basis: the curve through the measured sizes, between them
and beyond), and each size after the first also from the smaller sizes only (the database grew since).
Each row also shows the linear projection from the first size's drill (the method without a curve).

Before the backup and before each drill the source cluster is settled: after generation VACUUM (ANALYZE)
and CHECKPOINT (else autovacuum's hint-bit and visibility-map writes and the checkpoint of GBs of dirty
pages run during the drill, on the same 2 cores and disk), then `sync` and a dropped page cache.
`--repeat N` runs N full drills per size and takes the median (the spread is in the row); each drill
records the load average at its start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import shutil
import sys
import tempfile
import time
from pathlib import Path

from backupd.drill import projection
from bench.backup_vs_restic import BenchError, drop_caches, run_bench
from bench.dataset import generate
from bench.drill_vs_restic import DATA_TARGET, DB_TARGET, Setup

SAMPLE_FILES = "version: 1\nname: files\nkind: sample\nsandbox: {max_bytes: 64GiB}\n" \
               "sample: {max_files: 200, max_bytes: 32MiB}\n"
SAMPLE_DB = """version: 1
name: tos-db
kind: sample
sandbox: {max_bytes: 64GiB}
probes:
  - kind: postgres
    row_counts: true
"""


def _drill(setup: Setup, target: str, full: bool) -> dict:
    load = os.getloadavg()[0]
    _, doc = setup.cli("drill", "--target", target, *(["--full"] if full else []))
    (d,) = doc["drills"]
    if d["verdict"] not in ("PASS", "WARN"):
        raise BenchError(f"drill of {target}: {d['verdict']}: {d.get('reason')}")
    d["bench"] = {"load_average": round(load, 2)}  # at its start: a drill beside busy neighbours measures slow
    return d


def settle(pg, dbname: str | None) -> bool:
    """The source cluster quiet before a measurement (module docstring): with `dbname`, VACUUM (ANALYZE)
    and CHECKPOINT first; then sync and drop the page cache. False when the cache could not be dropped."""
    if dbname:
        pg.psql("VACUUM (ANALYZE)", dbname)
        pg.psql("CHECKPOINT")
    return drop_caches()


def _median_drill(setup: Setup, target: str, repeat: int, before) -> tuple[dict, list[dict]]:
    """`repeat` full drills, `before()` ahead of each; the one with the median service-ready time (the
    lower of the middle two for an even count), and all."""
    drills = []
    for _ in range(repeat):
        before()
        drills.append(_drill(setup, target, full=True))
    ordered = sorted(drills, key=lambda d: d["service_ready_seconds"])
    return ordered[(len(ordered) - 1) // 2], drills


def _backup(setup: Setup, target: str) -> dict:
    _, doc = setup.cli("backup", "--target", target)
    (result,) = doc["results"]
    if result["status"] != "ok":
        raise BenchError(f"backup of {target}: {result.get('error')}")
    return result


def _row(label: str, projected: float, measured: float, **extra) -> dict:
    return {"size": label, "projected": projected, "measured": measured,
            "error": projection.error(projected, measured), **extra}


def files_bench(run_dir: Path, seaweed, secrets: Path, fillers: Path, workdir: Path, sizes: list[float], log):
    rows = []
    for i, size in enumerate(sizes):
        data = generate(workdir / f"data-{size}", size)
        setup = Setup(run_dir, f"files-{i}", seaweed.endpoint, secrets, DATA_TARGET.format(data=workdir / f"data-{size}"),
                      fillers)
        (setup.dir / "specs" / "files.yaml").write_text(SAMPLE_FILES)
        _backup(setup, "data")
        sample = _drill(setup, "data", full=False)
        full = _drill(setup, "data", full=True)
        row = _row(f"{size} GiB", sample["projected_full_seconds"], full["service_ready_seconds"],
                   files=data["files"], bytes=data["bytes"], sample_files=sample["files_restored"],
                   sample_bytes=sample["bytes_restored"], projected_phases=sample["projection"]["phases"],
                   measured_phases=full["rates"]["scaled"] | full["rates"]["fixed"],
                   recorded_error=(full.get("projection_error") or {}).get("error"),
                   sample_read=sample.get("restore_read_bytes"), full_read=full.get("restore_read_bytes"))
        log(f"files {size} GiB: projected {row['projected']:.2f}s measured {row['measured']:.2f}s "
            f"error {row['error']:+.1%}")
        rows.append(row)
    return rows


def _project(history: list[dict], size: dict) -> dict:
    """`history`'s projection (as `backupd status` makes it: projection.basis, newest first) at `size`."""
    return projection.project(projection.basis(history), size["bytes"], size["files"])


def database_bench(run_dir: Path, seaweed, secrets: Path, fillers: Path, sizes: list[int], log,
                   repeat: int = 1, settled: bool = True, workdir: Path | None = None, fmt: str = "plain"):
    from bench import tosdb

    rows, drills_by_size = [], []
    with tosdb.source(workdir) as pg:
        target = DB_TARGET.format(fmt=fmt, host=pg.host, port=pg.port)
        setup = Setup(run_dir, "db", seaweed.endpoint, secrets, target, fillers)
        (setup.dir / "specs" / "tos-db.yaml").write_text(SAMPLE_DB)
        policy = setup.dir / "policies" / "bench.yaml"
        template = policy.read_text()
        for containers in sizes:
            dbname, counts, generated = tosdb.database(pg, containers, log)
            policy.write_text(template.replace("database: tos,", f"database: {dbname},"))  # the database grew
            if settled:
                t0 = time.monotonic()
                dropped = settle(pg, dbname)
                log(f"source settled (VACUUM ANALYZE, CHECKPOINT, sync{', caches dropped' if dropped else ''}) "
                    f"in {time.monotonic() - t0:.1f}s")
            backup = _backup(setup, f"tos-{fmt}")
            sample = _drill(setup, f"tos-{fmt}", full=False)
            full, drills = _median_drill(setup, f"tos-{fmt}", repeat,
                                         (lambda: settle(pg, None)) if settled else (lambda: None))
            size = full["rates"]
            row = {"size": f"{containers} containers", "rows": sum(counts.values()), "dump_bytes": backup["bytes"],
                   "sample_projected": sample["projected_full_seconds"], "measured": full["service_ready_seconds"],
                   "sample_rates": sample["rates"],
                   "measured_phases": size["scaled"] | size["fixed"], "generate_seconds": round(generated, 1),
                   "load_average": full["bench"]["load_average"],  # shared machine: a loaded drill measures slow
                   "settled": settled, "bytes": size["bytes"], "files": size["files"],
                   "runs": [{"measured": d["service_ready_seconds"], **d["bench"],
                             "load": d["rates"]["scaled"].get("probe:load"),
                             "index": d["rates"]["scaled"].get("probe:index"), "rates": d["rates"]}
                            for d in drills]}
            # what state holds after this size: the sample drill, then the full drills (newest first)
            drills_by_size.append([{"rates": d["rates"]} for d in reversed(drills)] + [{"rates": sample["rates"]}])
            if len(drills_by_size) > 1:  # as `backupd status`: every earlier size's drills in state
                history = [d for earlier in reversed(drills_by_size[:-1]) for d in earlier]
                got = _project(history, row)
                far = projection.project(drills_by_size[0][0]["rates"], size["bytes"], size["files"])["seconds"]
                row.update(projected=got["seconds"], projected_phases=got["phases"],
                           from_size=rows[-1]["size"], error=projection.error(got["seconds"], row["measured"]),
                           from_first=far, error_from_first=projection.error(far, row["measured"]))
                log(f"database {containers}: projected from the smaller sizes {row['projected']:.2f}s, "
                    f"measured {row['measured']:.2f}s, error {row['error']:+.1%}")
            else:
                log(f"database {containers}: measured {row['measured']:.2f}s (first size: nothing to project from)")
            log("    runs: " + "; ".join(f"{r['measured']:.2f}s (load {r['load']}, index {r['index']}, "
                                         f"load average {r['load_average']})"
                                         for r in row["runs"]))
            rows.append(row)
    for i, row in enumerate(rows):  # every size from the others' drills: the curve at, between and beyond them
        others = [d for j, group in reversed(list(enumerate(drills_by_size))) if j != i for d in group]
        if others:
            got = _project(others, row)
            row.update(from_others=got["seconds"], from_others_phases=got["phases"],
                       error_from_others=projection.error(got["seconds"], row["measured"]))
    return rows


def benchmark(containers: list[int], sizes: list[float], workdir: Path, log=print, only=None, repeat: int = 1,
              settled: bool = True, fmt: str = "plain") -> dict:
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="projection-run-", dir=workdir))
    secrets, fillers = run_dir / "secrets", run_dir / "filler"
    fillers.mkdir()
    (fillers / "README").write_text("filler target: only here so the policy lints clean\n")
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=["bench"]) as seaweed:
            seaweed.create_locked_bucket("bench", days=1)
            files = (files_bench(run_dir, seaweed, secrets, fillers, workdir, sizes, log)
                     if only in (None, "files") else None)
            database = (database_bench(run_dir, seaweed, secrets, fillers, containers, log, repeat, settled,
                                       workdir, fmt)
                        if only in (None, "database") else None)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"files": files, "database": database, "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "total_seconds": round(time.monotonic() - t0, 1)}


def print_report(doc: dict) -> None:
    for row in doc["files"] or []:
        print(f"files {row['size']:>10} ({row['files']} files): sample {row['sample_files']} files -> projected "
              f"{row['projected']:7.2f}s, full drill {row['measured']:7.2f}s, error {row['error']:+.1%}")
    for row in doc["database"] or []:
        head = f"database {row['size']:>18} ({row['rows']} rows, dump {row['dump_bytes'] / 2**20:.0f} MiB):"
        print(f"{head} full drill {row['measured']:7.2f}s; from the other sizes {row['from_others']:7.2f}s, "
              f"error {row['error_from_others']:+.1%}")
        if "projected" in row:
            print(f"    from the smaller sizes (as status after growing) {row['projected']:7.2f}s, error "
                  f"{row['error']:+.1%}; linear from the first size's drill {row['from_first']:7.2f}s, error "
                  f"{row['error_from_first']:+.1%}")
        print("    measured phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in row["measured_phases"].items())
              + (f"; load average {row['load_average']:.1f}" if "load_average" in row else ""))
        if len(row.get("runs") or []) > 1:
            times = [r["measured"] for r in row["runs"]]
            print(f"    {len(times)} full drills: " + ", ".join(f"{t:.2f}s" for t in times)
                  + f" (median {statistics.median(times):.2f}s; the row is the drill of {row['measured']:.2f}s)")
    print(f"{doc['cpus']} CPUs, load average at the end {doc['load_average'][0]:.1f}; total {doc['total_seconds']}s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.projection", description=__doc__.split("\n\n")[0])
    ap.add_argument("--containers", default="100000,300000,1000000", help="TOS database sizes, comma-separated")
    ap.add_argument("--sizes-gb", default="0.1,0.25,0.5", help="file data set sizes in GiB, comma-separated")
    ap.add_argument("--only", choices=("files", "database"), default=None, help="run one part only")
    ap.add_argument("--repeat", type=int, default=1, help="full database drills per size (median taken)")
    ap.add_argument("--no-settle", action="store_true",
                    help="drill right after generation (no VACUUM/CHECKPOINT/sync/cache drop): the old way")
    ap.add_argument("--format", choices=("plain", "custom"), default="plain", help="database dump format")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    args = ap.parse_args(argv)
    try:
        containers = [int(x) for x in args.containers.split(",")]
        sizes = [float(x) for x in args.sizes_gb.split(",")]
    except ValueError:
        ap.error("--containers and --sizes-gb take comma-separated numbers")
    if not 1 <= args.repeat <= 9:
        ap.error("--repeat takes 1 to 9")
    return run_bench(args.json, lambda log: benchmark(containers, sizes, args.workdir.resolve(), log, args.only,
                                                      args.repeat, not args.no_settle, args.format),
                   print_report)


if __name__ == "__main__":
    sys.exit(main())
