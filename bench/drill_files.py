"""The files part of bench.drill_vs_restic: a full drill and `restore --to` of the 1 GiB data set against
restic's own restore of the same snapshot with the same restic binary, in the same run.

Per round, in rotating order, the page cache dropped before each, and each tool's background work finished
before the next starts (the drill's sandbox reaper is waited for, not timed):

- `restic`: `restic restore <id>` alone: the floor;
- `restic+sha256sum`: the same restore, then `find | xargs sha256sum` of every file (what an operator would
  otherwise run to verify), then the copy removed (timed: a full drill removes its sandbox too);
- `restverify`: `restverify run` (PyPI, when it installs; it hashes a sample of about 200 files);
- `drill`: `backupd drill --target data --full --json` (real CLI: start-up, select, restore, verify every
  file against the backup-time manifest, record, report); its phases as it reports them;
- `restore-to`: `backupd restore --target data --to DIR --json` (the same verification; the copy is removed
  afterwards, untimed, as `restic` leaves its copy).
Ratios: drill and restore-to over each of the others, median of the per-round ratios.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from pathlib import Path

#: What the drill reports as its own phases (seconds), in the order the table prints them.
PHASES = ("select", "restore", "verify", "probes")


def restic_version(restic: str) -> str:
    return subprocess.run([restic, "version"], capture_output=True, text=True).stdout.strip()


class FilesRaw:
    """The backupd repository read with plain restic (the same binary as backupd's) and restverify."""

    def __init__(self, run_dir: Path, seaweed, secrets: Path, repo_path: str, data: Path, restverify, restic: str,
                 bench):
        self.dir, self.data, self.restverify, self.restic, self.b = run_dir / "raw-files", data, restverify, restic, bench
        self.dir.mkdir()
        self.log = self.dir / "steps.log"
        self.repo = f"s3:{seaweed.endpoint}/{bench.BUCKET}/{repo_path}"
        self.env = {**bench._base_env(), **seaweed.env_for("writer"), "RESTIC_REPOSITORY": self.repo,
                    "RESTIC_PASSWORD_FILE": str(secrets / "restic-password"),
                    "RESTIC_CACHE_DIR": str(self.dir / "cache"), "HOME": str(self.dir)}

    def _restore(self, snapshot: str, target: Path) -> float:
        shutil.rmtree(target, ignore_errors=True)
        seconds, _ = self.b.run_step([self.restic, "restore", snapshot, "--target", str(target)], self.env,
                                     "restic restore", self.log)
        return seconds

    def restore_alone(self, snapshot: str) -> dict:
        target = self.dir / "restore"
        seconds = self._restore(snapshot, target)
        shutil.rmtree(target, ignore_errors=True)  # not timed: the floor is restic's restore alone
        return {"seconds": seconds}

    def restore_and_hash(self, snapshot: str) -> dict:
        target = self.dir / "restore"
        t0 = time.monotonic()
        restored = self._restore(snapshot, target)
        sums = self.dir / "sha256sums"
        script = f"find {target} -type f -print0 | xargs -0 -r sha256sum > {sums}"
        self.b.run_step(["sh", "-c", script], self.env, "sha256sum", self.log)
        hashed = time.monotonic() - t0
        t1 = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        removed = time.monotonic() - t1
        return {"seconds": hashed + removed, "restore": restored, "hash": hashed - restored, "remove": removed,
                "files": sum(1 for _ in open(sums, "rb"))}

    def restverify_run(self, snapshot: str) -> dict:
        argv = [str(self.restverify), "run", "-r", self.repo, "--snapshot", snapshot[:8], "-s", str(self.data),
                "--json", "--config", str(self.dir / "restverify.toml")]
        shim = self.dir / "bin"  # restverify runs `restic` from PATH: the same binary as the others
        shim.mkdir(exist_ok=True)
        if not (shim / "restic").exists():
            (shim / "restic").symlink_to(shutil.which(self.restic) or self.restic)
        env = {**self.env, "PATH": f"{shim}:{self.env.get('PATH', '')}"}
        t0 = time.monotonic()
        done = subprocess.run(argv, env=env, cwd=self.dir, capture_output=True, timeout=1800)
        seconds = time.monotonic() - t0
        try:
            doc = __import__("json").loads(done.stdout)
        except ValueError:
            doc = {"status": "error", "stderr": done.stderr.decode(errors="replace")[-300:]}
        if doc.get("status") != "pass":
            raise self.b.BenchError(f"restverify run: {doc.get('status')}: {str(doc)[:400]}")
        return {"seconds": seconds}


def _await_reaper(setup) -> float:
    """Seconds until the drill's detached sandbox removal is done (the next tool must not share the disk
    with it); not part of any timed figure."""
    parent = setup.dir / "state" / "sandbox"
    t0 = time.monotonic()
    while list(parent.glob("removing-*")) and time.monotonic() - t0 < 300:
        time.sleep(0.05)
    return round(time.monotonic() - t0, 3)


def drill(setup, bench) -> dict:
    """One full drill through the CLI: wall seconds, the drill's own phases and what lies outside them."""
    cpu = bench.machine_cpu_seconds()
    seconds, doc = setup.cli("drill", "--target", "data", "--full")
    cpu = bench.machine_cpu_seconds() - cpu
    (d,) = doc["drills"]
    if d["verdict"] != "PASS" or not d["verification"]["ok"]:
        raise bench.BenchError(f"drill of data: {d['verdict']}: {d.get('reason')}")
    if d["verification"]["verified"] != d["total_files"]:
        raise bench.BenchError(f"drill verified {d['verification']['verified']} of {d['total_files']} files")
    phases = {p: d["phases"].get(p, 0.0) for p in PHASES}
    phases["restic start-up (in restore)"] = d.get("restore_startup_seconds") or 0.0
    phases["manifest wait after restic (in restore)"] = d.get("restore_alongside_seconds") or 0.0
    phases["service-ready (verdict)"] = d["service_ready_seconds"]
    phases["outside (CLI start-up, record, report)"] = round(seconds - d["service_ready_seconds"], 3)
    return {"seconds": seconds, "cpu_seconds": cpu, "busy_cores": cpu / seconds, "phases": phases,
            "files": d["files_restored"], "hashed_during_restore": d["verification"].get("hashed_during_restore"),
            "guess": d.get("guess"), "reaper_seconds": _await_reaper(setup)}


def restore_to(setup, run_dir: Path, bench) -> dict:
    to = run_dir / "restore-to"
    shutil.rmtree(to, ignore_errors=True)
    seconds, doc = setup.cli("restore", "--target", "data", "--to", str(to))
    if doc.get("status") != "ok" or not doc["verification"]["ok"]:
        raise bench.BenchError(f"restore --to: {doc.get('status')}: {str(doc)[:300]}")
    shutil.rmtree(to, ignore_errors=True)  # not timed, as restic's copy
    return {"seconds": seconds, "duration": doc["duration"], "verified": doc["verification"]["verified"],
            "hashed_during_restore": doc["verification"].get("hashed_during_restore"), "guess": doc.get("guess")}


def _rotate(tools: list[str], n: int) -> list[str]:
    return tools[n % len(tools):] + tools[:n % len(tools)]


def files_bench(run_dir: Path, seaweed, secrets: Path, fillers: Path, data: Path, rounds: int, rv, log,
                restic: str = "restic") -> dict:
    from bench import drill_vs_restic as bench

    setup = bench.Setup(run_dir, "files", seaweed.endpoint, secrets, bench.DATA_TARGET.format(data=data), fillers)
    with open(setup.config, "a") as config:  # backupd runs the binary the raw restores run
        config.write(f"restic: '{restic}'\n")
    _, doc = setup.cli("backup", "--target", "data")
    (result,) = doc["results"]
    if result["status"] != "ok":
        raise bench.BenchError(f"backup of the data set: {result.get('error')}")
    snap = result["snapshot_id"]
    raw = FilesRaw(run_dir, seaweed, secrets, "files", data, rv, restic, bench)
    tools = ["drill", "restic", "restic+sha256sum", "restore-to"] + (["restverify"] if rv else [])
    run = {"drill": lambda: drill(setup, bench), "restic": lambda: raw.restore_alone(snap),
           "restic+sha256sum": lambda: raw.restore_and_hash(snap), "restore-to": lambda: restore_to(setup, run_dir, bench),
           "restverify": lambda: raw.restverify_run(snap)}
    samples = []
    for n in range(rounds):
        row = {"order": _rotate(tools, n)}
        for tool in row["order"]:
            dropped = bench.drop_caches()
            row[tool] = run[tool]()
            row[tool]["cache_dropped"] = dropped
        row["load_average"] = bench.os.getloadavg()[0]
        log(f"files round {n + 1}: " + "  ".join(f"{t} {row[t]['seconds']:.2f}s" for t in tools)
            + f"  load average {row['load_average']:.1f}")
        samples.append(row)
    med = statistics.median
    out = {"snapshot": snap, "files": result["files"], "bytes": result["bytes"], "rounds": samples,
           "restic": restic_version(restic), "restic_path": restic,
           "median_seconds": {t: med(r[t]["seconds"] for r in samples) for t in tools},
           "restverify": "measured" if rv else "not installed (see log)",
           "load_average": [r["load_average"] for r in samples]}
    out["ratio"] = {f"{a}/{t}": med(r[a]["seconds"] / r[t]["seconds"] for r in samples)
                    for a in ("drill", "restore-to") for t in tools if t not in ("drill", "restore-to")}
    out["drill_phases"] = {p: med(r["drill"]["phases"][p] for r in samples) for p in samples[0]["drill"]["phases"]}
    out["drill_reaper_seconds"] = med(r["drill"]["reaper_seconds"] for r in samples)
    out["restore_to_duration"] = med(r["restore-to"]["duration"] for r in samples)
    return out


def print_files(f: dict, rounds: int) -> None:
    print(f"files: {f['files']} files, {f['bytes'] / 2**30:.2f} GiB, snapshot {f['snapshot'][:8]}, {rounds} round(s), "
          f"page cache dropped before each run; {f['restic']} ({f['restic_path']}) for backupd and raw alike")
    for tool, seconds in f["median_seconds"].items():
        print(f"  {tool:<17} median {seconds:7.2f}s")
    for name, ratio in f["ratio"].items():
        print(f"  ratio {name}: {ratio:.3f}")
    if f["restverify"] != "measured":
        print(f"  restverify: {f['restverify']}")
    print("  drill phases (median, seconds; the restore phase includes restic's start-up and the hashing "
          "alongside it):")
    for phase, seconds in f["drill_phases"].items():
        print(f"    {phase:<42} {seconds:7.3f}")
    print(f"  after the drill's exit, its sandbox removal (detached, not waited for): {f['drill_reaper_seconds']:.2f}s; "
          f"restore --to's own duration (until verified, modes checked): {f['restore_to_duration']:.2f}s")
    last = f["rounds"][-1]["drill"]
    print(f"  hashed during the restore: {last['hashed_during_restore']} of {last['files']}; machine busy "
          f"{statistics.median(r['drill']['busy_cores'] for r in f['rounds']):.2f} cores during the drill (median); "
          "load average after each round: " + ", ".join(f"{x:.1f}" for x in f["load_average"]))
