"""A full restore drill (`backupd drill --full`) against what an operator would otherwise run.

    python -m bench.drill_vs_restic [--size-gb 1.0] [--rounds 3] [--containers 100000] [--only files|database]
                                    [--no-plain] [--workdir DIR] [--json]

Files: the same snapshot of the deterministic data set (bench/dataset.py) in a SeaweedFS Object-Lock
bucket, restored three ways per round, the order rotating across rounds and the page cache dropped
before each: `backupd drill --target data --full` (restore, verify every file against the backup-time
manifest, phases timed), `restic restore` followed by `sha256sum` of every restored file and removing the copy (the drill
removes its sandbox too), and
`restverify run` (PyPI restverify in a throw-away venv; it hashes a sample of about 200 files and
compares the tree with the source). Ratios are drill / the other, median over rounds.

Database: the TOS database (demo/tos_data.py, --containers; kept per size in DIR/tos-source, see
bench/tosdb.py) backed up as a plain dump and as a custom-format dump. Per round, the order rotating and
the page cache dropped before each: a full drill of each to service-ready (restore, verify, load into a
throw-away cluster, row counts); the floor: `pg_restore -j2` of the same archive (restored by restic once,
its data offsets written as pg_dump writes them into a file) into an empty database of a cluster started
by hand beforehand with the drill's server settings (only pg_restore timed); `backupd restore
--into-database` of the custom dump into an empty database of that cluster; and `restic restore` of the
archive alone (what must come before any load). Ratios against the floor, median of --rounds, with the
custom drill's phase table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.backup_vs_restic import DATA_TARGET as BENCH_DATA_TARGET
from bench.backup_vs_restic import (FILLER, FILLERS, POLICY_HEAD, BenchError, _base_env, drop_caches,
                                     run_bench, run_step)
from bench import drill_files
from bench.dataset import generate

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench"
HOST = "bench-host"
HEAD = POLICY_HEAD
DATA_TARGET = BENCH_DATA_TARGET + "    drill: files\n"
DB_TARGET = """  - name: tos-{fmt}
    category: container_data
    owner: bench
    sources:
      dump: {{kind: pg_dump, format: {fmt}, database: tos, host: '{host}', port: {port}, user: postgres}}
    frequency: 1h
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: tos-db
"""
FILES_SPEC = "version: 1\nname: files\nkind: full\nsandbox: {max_bytes: 64GiB}\n"
DB_SPEC = """version: 1
name: tos-db
kind: full
sandbox: {max_bytes: 64GiB}
probes:
  - kind: postgres
    jobs: 2
    row_counts: true
"""


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine was busy (every process: the drill, restic, SeaweedFS, PostgreSQL)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Setup:
    """A backupd config (own state) with policies and specs in a run directory."""

    def __init__(self, run_dir: Path, name: str, endpoint: str, secrets: Path, targets: str, fillers: Path):
        self.dir = run_dir / name
        (self.dir / "policies").mkdir(parents=True)
        (self.dir / "specs").mkdir()
        (self.dir / "specs" / "files.yaml").write_text(FILES_SPEC)
        (self.dir / "specs" / "tos-db.yaml").write_text(DB_SPEC)
        text = HEAD.format(endpoint=endpoint, bucket=BUCKET, repo_path=name) + targets
        text += "".join(FILLER.format(name=n, category=c, extra=e, path=fillers) for n, c, e in FILLERS)
        (self.dir / "policies" / "bench.yaml").write_text(text)
        self.config = self.dir / "backupd.yaml"
        self.config.write_text(f"policies: ['{self.dir / 'policies'}/*.yaml']\nstate_dir: '{self.dir / 'state'}'\n"
                               f"secrets_dir: '{secrets}'\nhost: {HOST}\nretry_attempts: 1\n"
                               f"restore_tests: '{self.dir / 'specs'}'\n")
        self.log = self.dir / "steps.log"
        self.env = {**_base_env(), "PYTHONPATH": str(ROOT)}

    def cli(self, *args: str) -> tuple[float, dict]:
        argv = [sys.executable, "-m", "backupd", *args, "--config", str(self.config), "--json"]
        seconds, out = run_step(argv, self.env, f"backupd {' '.join(args)}", self.log)
        return seconds, json.loads(out)

    def drill(self, target: str) -> dict:
        cpu = machine_cpu_seconds()
        seconds, doc = self.cli("drill", "--target", target, "--full")
        cpu = machine_cpu_seconds() - cpu
        (d,) = doc["drills"]
        if d["verdict"] != "PASS":
            raise BenchError(f"drill of {target}: {d['verdict']}: {d.get('reason')}")
        return {"seconds": seconds, "cpu_seconds": cpu, "busy_cores": cpu / seconds,
                "ready": d["service_ready_seconds"], "phases": d["phases"],
                "files": d["files_restored"], "hashed_during_restore": d["verification"].get("hashed_during_restore"),
                "probe_timings": [p["details"].get("timings") for p in d.get("probes", [])],
                "rates": d.get("rates") or {"fixed": {}, "scaled": {}}}


def restverify_venv(workdir: Path, log) -> Path | None:
    """restverify installed from PyPI into a throw-away venv; None (and why) when it cannot be."""
    venv = workdir / "restverify-venv"
    exe = venv / "bin" / "restverify"
    if exe.exists():
        return exe
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "restverify"], capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"restverify not measured: venv failed: {exc}")
        return None
    if done.returncode != 0 or not exe.exists():
        log(f"restverify not measured: pip install restverify failed: {done.stderr.strip()[-300:]}")
        return None
    return exe


class Raw:
    """The same repository read with plain restic (and restverify) with the writer identity."""

    def __init__(self, run_dir: Path, seaweed, secrets: Path, repo_path: str, data: Path, restverify: Path | None):
        self.dir, self.data, self.restverify = run_dir / "raw", data, restverify
        self.dir.mkdir()
        self.log = self.dir / "steps.log"
        self.repo = f"s3:{seaweed.endpoint}/{BUCKET}/{repo_path}"
        self.env = {**_base_env(), **seaweed.env_for("writer"), "RESTIC_REPOSITORY": self.repo,
                    "RESTIC_PASSWORD_FILE": str(secrets / "restic-password"),
                    "RESTIC_CACHE_DIR": str(self.dir / "cache"), "HOME": str(self.dir)}

    def restore_and_hash(self, snapshot: str) -> dict:
        target = self.dir / "restore"
        shutil.rmtree(target, ignore_errors=True)
        t0 = time.monotonic()
        run_step(["restic", "restore", snapshot, "--target", str(target)], self.env, "restic restore", self.log)
        restored = time.monotonic() - t0
        sums = self.dir / "sha256sums"
        script = f"find {target} -type f -print0 | xargs -0 -r sha256sum > {sums}"
        run_step(["sh", "-c", script], self.env, "sha256sum", self.log)
        seconds = time.monotonic() - t0
        files = sum(1 for _ in open(sums, "rb"))
        t1 = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)  # a drill removes its sandbox too: same work on both sides
        removed = time.monotonic() - t1
        return {"seconds": seconds + removed, "restore": restored, "hash": seconds - restored, "remove": removed,
                "files": files}

    def restverify_run(self, snapshot: str) -> dict:
        argv = [str(self.restverify), "run", "-r", self.repo, "--snapshot", snapshot[:8], "-s", str(self.data),
                "--json", "--config", str(self.dir / "restverify.toml")]
        t0 = time.monotonic()
        done = subprocess.run(argv, env=self.env, cwd=self.dir, capture_output=True, timeout=1800)
        seconds = time.monotonic() - t0
        try:
            doc = json.loads(done.stdout)
        except ValueError:
            doc = {"status": "error", "stderr": done.stderr.decode(errors="replace")[-300:]}
        if doc.get("status") != "pass":
            raise BenchError(f"restverify run: {doc.get('status')}: {json.dumps(doc)[:400]}")
        return {"seconds": seconds, "status": doc["status"]}


def _rotate(tools: list[str], n: int) -> list[str]:
    return tools[n % len(tools):] + tools[:n % len(tools)]


class HandCluster:
    """The floor: a PostgreSQL cluster started by hand (initdb, pg_ctl), with the drill's restore-speed
    settings (backupd.probes.postgres.CONF: no fsync, wal_level minimal, no autovacuum, the drill's
    maintenance_work_mem), and an empty database per round; only `pg_restore -j` is timed."""

    def __init__(self, base: Path):
        from demo.postgres import PostgresCluster

        self.pg = PostgresCluster(base)

    def __enter__(self):
        from backupd.probes.postgres import maintenance_mb

        self.pg.__enter__()
        mb = maintenance_mb(2, 2 << 30)  # as the drill's probe: 2 loaders, the default sandbox memory
        for name, value in (("wal_level", "minimal"), ("max_wal_senders", "0"), ("archive_mode", "off"),
                            ("max_wal_size", "4GB"), ("checkpoint_timeout", "1d"), ("autovacuum", "off"),
                            ("maintenance_work_mem", f"{mb}MB")):
            self.pg.psql(f"ALTER SYSTEM SET {name} = '{value}'")
        self.pg._run([str(self.pg.bindir / "pg_ctl"), "-D", str(self.pg.datadir), "-l", str(self.pg.log), "-w",
                      "restart"], timeout=120)
        return self

    def __exit__(self, *exc):
        self.pg.__exit__(*exc)

    def empty(self, name: str) -> str:
        self.pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.pg.psql("CHECKPOINT")
        self.pg.psql(f'CREATE DATABASE "{name}"')
        return name

    def pg_restore(self, archive: Path, jobs: int, log: Path) -> float:
        from demo.postgres import pg_bindir

        name = self.empty("floor")
        argv = [str(pg_bindir() / "pg_restore"), f"--jobs={jobs}", "--no-password", "--host", self.pg.host,
                "--port", str(self.pg.port), "--username", self.pg.user, "--dbname", name, str(archive)]
        seconds, _ = run_step(argv, _base_env(), f"pg_restore -j{jobs}", log)
        return seconds


def _db_phases(d: dict) -> dict:
    """The custom drill's phase table: the drill's phases with restic's start-up and the probe's own split
    out (projection.breakdown), and what the CLI spent outside service-ready."""
    parts = dict(d["rates"]["fixed"]) | dict(d["rates"]["scaled"])
    parts["outside (CLI start, report, evidence)"] = round(d["seconds"] - d["ready"], 3)
    return parts


def database_bench(run_dir: Path, seaweed, secrets: Path, fillers: Path, containers: int, rounds: int, log,
                   workdir: Path, plain: bool = True) -> dict:
    from backupd.sources import pgarchive
    from bench import tosdb

    with tosdb.source(workdir) as pg:
        dbname, rows, _ = tosdb.database(pg, containers, log)
        pg.psql("CHECKPOINT")
        formats = ["plain", "custom"] if plain else ["custom"]
        targets = "".join(DB_TARGET.format(fmt=f, host=pg.host, port=pg.port).replace("database: tos,",
                                                                                    f"database: {dbname},")
                          for f in ("plain", "custom"))
        setup = Setup(run_dir, "db", seaweed.endpoint, secrets, targets, fillers)
        sizes, snapshots = {}, {}
        for fmt in formats:
            _, doc = setup.cli("backup", "--target", f"tos-{fmt}")
            (result,) = doc["results"]
            if result["status"] != "ok":
                raise BenchError(f"backup of tos-{fmt}: {result.get('error')}")
            sizes[fmt], snapshots[fmt] = result["bytes"], result["snapshot_id"]
        raw = Raw(run_dir, seaweed, secrets, "db", run_dir, None)
        # the archive as restic restores it, with the data offsets pg_dump writes into a file (pg_restore -j
        # at its fastest: without them each worker steps over every row before its table)
        restored = raw.dir / "archive"
        run_step(["restic", "restore", snapshots["custom"], "--target", str(restored)], raw.env, "restic restore",
                 raw.log)
        (archive,) = [p for p in restored.rglob("*") if p.is_file()]
        offsets = pgarchive.add_offsets(archive)
        samples = []
        with HandCluster(run_dir / "hand") as hand:
            tools = formats + ["floor", "restore-db", "restic"]
            for n in range(rounds):
                row = {"order": _rotate(tools, n)}
                for tool in row["order"]:
                    drop_caches()
                    if tool in ("plain", "custom"):
                        row[tool] = setup.drill(f"tos-{tool}")
                    elif tool == "floor":
                        row[tool] = {"seconds": hand.pg_restore(archive, 2, raw.log)}
                    elif tool == "restic":  # what must precede any load: restic's restore of the archive
                        shutil.rmtree(raw.dir / "again", ignore_errors=True)
                        row[tool] = {"seconds": run_step(["restic", "restore", snapshots["custom"], "--target",
                                                          str(raw.dir / "again")], raw.env, "restic restore",
                                                         raw.log)[0]}
                    else:
                        into = hand.empty("into")
                        seconds, doc = setup.cli("restore", "--target", "tos-custom", "--into-database", into,
                                                 "--db-host", hand.pg.host, "--db-port", str(hand.pg.port),
                                                 "--db-user", hand.pg.user, "--allow-superuser", "--jobs", "2")
                        if doc.get("status") != "ok":
                            raise BenchError(f"restore --into-database: {doc.get('problems')}")
                        row[tool] = {"seconds": seconds, "duration": doc["duration"], "phases": doc["phases"]}
                row["load_average"] = os.getloadavg()[0]  # the machine is shared: rounds are only comparable with it
                log(f"database round {n + 1}: " + "  ".join(
                    f"{t} {row[t].get('ready', row[t]['seconds']):.2f}s" for t in tools)
                    + f"  load average {row['load_average']:.1f}")
                samples.append(row)
    med = statistics.median
    out = {"rows": sum(rows.values()), "dump_bytes": sizes, "data_offsets_added": offsets, "rounds": samples,
           "load_average": os.getloadavg(),
           "median_seconds": {"floor": med(r["floor"]["seconds"] for r in samples),
                              "restic restore": med(r["restic"]["seconds"] for r in samples),
                              "restore --into-database (wall)": med(r["restore-db"]["seconds"] for r in samples),
                              "restore --into-database (duration)": med(r["restore-db"]["duration"]
                                                                        for r in samples)}}
    for fmt in formats:
        out["median_seconds"][f"drill {fmt} (ready)"] = med(r[fmt]["ready"] for r in samples)
        out["median_seconds"][f"drill {fmt} (wall)"] = med(r[fmt]["seconds"] for r in samples)
    out["ratio"] = {
        "drill custom ready / floor": med(r["custom"]["ready"] / r["floor"]["seconds"] for r in samples),
        "drill custom wall / floor": med(r["custom"]["seconds"] / r["floor"]["seconds"] for r in samples),
        "restore --into-database duration / floor": med(r["restore-db"]["duration"] / r["floor"]["seconds"]
                                                        for r in samples),
        "restore --into-database wall / floor": med(r["restore-db"]["seconds"] / r["floor"]["seconds"]
                                                    for r in samples),
        "(floor + restic restore) / floor": med((r["floor"]["seconds"] + r["restic"]["seconds"])
                                                / r["floor"]["seconds"] for r in samples)}
    if plain:
        out["ratio"]["drill custom / drill plain (ready)"] = med(r["custom"]["ready"] / r["plain"]["ready"]
                                                                 for r in samples)
    out["custom_phases"] = {k: med(_db_phases(r["custom"]).get(k, 0.0) for r in samples)
                            for k in _db_phases(samples[-1]["custom"])}
    out["restore_db_phases"] = {k: med(r["restore-db"]["phases"].get(k, 0.0) for r in samples)
                                for k in samples[-1]["restore-db"]["phases"]}
    out["busy_cores"] = {f: med(r[f]["busy_cores"] for r in samples) for f in formats}
    return out


def benchmark(size_gb: float, rounds: int, containers: int, workdir: Path, log=print, only=None,
              plain: bool = True, restic: str = "restic") -> dict:
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    dataset = generate(workdir / "data", size_gb) if only != "database" else None
    if dataset:
        log(f"data set: {dataset['files']} files, {dataset['bytes'] / 2**30:.2f} GiB at {workdir / 'data'}")
    rv = restverify_venv(workdir, log) if only != "database" else None
    run_dir = Path(tempfile.mkdtemp(prefix="drill-run-", dir=workdir))
    secrets, fillers = run_dir / "secrets", run_dir / "filler"
    fillers.mkdir()
    (fillers / "README").write_text("filler target: only here so the policy lints clean\n")
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=[BUCKET]) as seaweed:
            seaweed.create_locked_bucket(BUCKET, days=1)
            files = (drill_files.files_bench(run_dir, seaweed, secrets, fillers, workdir / "data", rounds, rv,
                                             log, restic) if only in (None, "files") else None)
            database = (database_bench(run_dir, seaweed, secrets, fillers, containers, rounds, log, workdir,
                                       plain)
                        if only in (None, "database") else None)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"dataset": dataset, "files": files, "database": database, "rounds": rounds,
            "restic": drill_files.restic_version(restic),
            "cpus": os.cpu_count(), "total_seconds": round(time.monotonic() - t0, 1)}


def print_report(doc: dict) -> None:
    if doc["files"]:
        drill_files.print_files(doc["files"], doc["rounds"])
    if doc["database"]:
        _print_database(doc["database"])
    print(f"{doc['restic']}; {doc['cpus']} CPUs; total {doc['total_seconds']}s")


def _print_database(db: dict) -> None:
    print(f"database: {db['rows']} rows; dump bytes " + ", ".join(f"{f} {b}" for f, b in db["dump_bytes"].items())
          + f"; floor: pg_restore -j2 of the restored archive ({db['data_offsets_added']} data offsets written) "
          "into an empty database of a cluster started by hand with the drill's server settings")
    for what, seconds in db["median_seconds"].items():
        print(f"  {what:<36} median {seconds:7.2f}s")
    for name, ratio in db["ratio"].items():
        print(f"  ratio {name}: {ratio:.3f}")
    print("  drill custom phases (median): " + ", ".join(f"{k} {v:.2f}s" for k, v in db["custom_phases"].items()))
    print("  restore --into-database phases (median): "
          + ", ".join(f"{k} {v:.2f}s" for k, v in db["restore_db_phases"].items()))
    print("  machine busy during the drills (cores, median): "
          + ", ".join(f"{f} {c:.2f}" for f, c in db["busy_cores"].items())
          + f"; load average at the end {db['load_average'][0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.drill_vs_restic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="file data set size in GiB (default 1.0)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, order rotating (default 3)")
    ap.add_argument("--containers", type=int, default=100_000, help="TOS database size (default 100000)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench",
                    help="keeps the data set and the restverify venv for reuse")
    ap.add_argument("--only", choices=("files", "database"), default=None, help="run one part only")
    ap.add_argument("--no-plain", action="store_true", help="database: drill the custom-format dump only")
    ap.add_argument("--restic", default="restic", help="files: the restic binary backupd (config `restic:`) and "
                    "the raw restores both run (default: restic on PATH)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the report")
    args = ap.parse_args(argv)
    if not 0.01 <= args.size_gb <= 64 or not 1 <= args.rounds <= 9 or not 100 <= args.containers <= 3_000_000:
        ap.error("--size-gb within 0.01..64, --rounds within 1..9, --containers within 100..3000000")
    return run_bench(args.json, lambda log: benchmark(args.size_gb, args.rounds, args.containers,
                                                      args.workdir.resolve(), log, args.only,
                                                      not args.no_plain, restic=args.restic), print_report)


if __name__ == "__main__":
    sys.exit(main())
