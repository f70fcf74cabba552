"""backupd backup (manifest included) vs a raw `restic backup` of the same data to the same bucket.

    python -m bench.backup_vs_restic [--size-gb 1.0] [--workdir DIR] [--rounds 2] [--json]

One run starts SeaweedFS (Object-Lock bucket) on 127.0.0.1, generates (or reuses) a deterministic
data set, initialises one raw repository `raw-N` and one backupd repository `backupd-N` per round
(init is not timed), then times wall-clock for a first backup and an unchanged re-run (median of
3) of each.
backupd runs through its real CLI (`python -m backupd backup --target data`), so the figure
includes Python start-up, policy loading, manifest hashing and state/evidence writes. The order
alternates across rounds; the page cache is dropped before every first backup when permitted.
Prints a table of seconds and backupd/raw ratios with the median over rounds (aims: first backup <= 1.05,
unchanged re-run <= 1.30) and backupd's phases (start-up, manifest, restic, record, after).
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

from bench.dataset import generate

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"first": 1.05, "rerun": 1.30}  # backupd / raw restic, median of the rounds
BUCKET = "bench"
HOST = "bench-host"
STEP_TIMEOUT = 600.0
CASES = ("first", "rerun")
RERUNS = 3
CASE_TITLES = {"first": "first backup", "rerun": "unchanged re-run"}

#: The S3 destination of every benchmark policy; {repo_path} is the repository's prefix.
POLICY_HEAD = """version: 1
site: {{name: Benchmark Terminal, port: other}}
destinations:
  worm:
    kind: s3
    endpoint: {endpoint}
    bucket: {bucket}
    path: {repo_path}
    object_lock: true
    credentials_file: s3-writer.env
    password_file: restic-password
targets:
"""
DATA_TARGET = """  - name: data
    category: container_data
    owner: bench
    sources: {{paths: ['{data}']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""
POLICY = POLICY_HEAD + DATA_TARGET
# The lint requires these categories in every policy; only `data` is ever backed up.
FILLERS = (("filler-programs", "system_program", "    environment: development\n"),
           ("filler-logs", "logs", "    source: network_device\n"))
FILLER = """  - name: {name}
    category: {category}
{extra}    owner: bench
    sources: {{paths: ['{path}']}}
    frequency: 1d
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""


class BenchError(RuntimeError):
    """A step failed; the message says which and why (never secrets)."""


def drop_caches() -> bool:
    """sync and drop the page cache (root only); False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def run_step(argv: list[str], env: dict, what: str, log: Path) -> tuple[float, bytes]:
    """Run argv, return (wall seconds, stdout); BenchError with the log tail on failure."""
    t0 = time.monotonic()
    with open(log, "ab") as err:
        try:
            done = subprocess.run(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                                  stdin=subprocess.DEVNULL, timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{what}: no result after {STEP_TIMEOUT:.0f}s") from None
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise BenchError(f"{what}: exit {done.returncode}: {' | '.join(tail)}")
    return seconds, done.stdout


class Round:
    """One raw repository and one backupd repository (with its own config and state) in a bucket."""

    def __init__(self, number: int, run_dir: Path, seaweed, data: Path, secrets: Path, fillers: Path):
        self.number, self.data = number, data
        self.dir = run_dir / f"round-{number}"
        self.dir.mkdir(parents=True)
        self.log = self.dir / "steps.log"
        self.raw_env = {**_base_env(), **seaweed.env_for("writer"),
                        "RESTIC_REPOSITORY": f"s3:{seaweed.endpoint}/{BUCKET}/raw-{number}",
                        "RESTIC_PASSWORD_FILE": str(secrets / "restic-password"),
                        "RESTIC_CACHE_DIR": str(self.dir / "raw-cache")}
        self.config = self._write_config(seaweed.endpoint, secrets, fillers)
        self.cli_env = {**_base_env(), "PYTHONPATH": str(ROOT)}

    def _write_config(self, endpoint: str, secrets: Path, fillers: Path) -> Path:
        pdir = self.dir / "policies"
        pdir.mkdir()
        text = POLICY.format(endpoint=endpoint, bucket=BUCKET, repo_path=f"backupd-{self.number}", data=self.data)
        text += "".join(FILLER.format(name=n, category=c, extra=e, path=fillers) for n, c, e in FILLERS)
        (pdir / "bench.yaml").write_text(text)
        config = self.dir / "backupd.yaml"
        config.write_text(f"policies: ['{pdir}/*.yaml']\nstate_dir: '{self.dir / 'state'}'\n"
                          f"secrets_dir: '{secrets}'\nhost: {HOST}\nretry_attempts: 1\n")
        return config

    def init(self) -> None:
        """Initialise both repositories (not timed): raw with restic init, backupd as its backup would."""
        run_step(["restic", "init"], self.raw_env, f"round {self.number}: restic init", self.log)
        from backupd.actions.common import ensure_repository, repository  # `backupd backup`'s first-use path
        from backupd.commands.common import load_config, load_policies

        cfg = load_config(self.config)
        dest = load_policies(cfg).destinations["worm"]
        ensure_repository(repository(cfg, "worm", dest), cfg.state_dir)

    def raw(self, case: str) -> dict:
        argv = ["restic", "backup", "--json", "--host", HOST, "--", str(self.data)]
        seconds, out = run_step(argv, self.raw_env, f"round {self.number}: raw restic {case}", self.log)
        summary = _last_summary(out)
        return {"seconds": seconds, "files": summary.get("total_files_processed"),
                "bytes": summary.get("total_bytes_processed"), "added": summary.get("data_added")}

    def backupd(self, case: str) -> dict:
        argv = [sys.executable, "-m", "backupd", "backup", "--target", "data", "--config", str(self.config), "--json"]
        seconds, out = run_step(argv, self.cli_env, f"round {self.number}: backupd {case}", self.log)
        result = json.loads(out)["results"][0]
        if result["status"] != "ok":
            raise BenchError(f"round {self.number}: backupd {case}: {result.get('error')}")
        return {"seconds": seconds, "files": result["files"], "bytes": result["bytes"],
                "added": result["data_added"], "inner_seconds": result["duration"],
                "phases": phases_of(seconds, result)}


def phases_of(wall: float, result: dict) -> dict:
    """Where a backupd backup's wall time went: start-up (interpreter, imports, config and policy load, exit),
    manifest (walk, hash, judgement), restic (the restic run), record (pre-flight, state, evidence), after
    (files changed meanwhile, hash cache, clean reference)."""
    ph = result.get("phases") or {}
    restic, manifest, after = ph.get("restic", 0.0), ph.get("manifest", 0.0), ph.get("after", 0.0)
    record = max(0.0, result["duration"] - restic)
    return {"start-up": round(max(0.0, wall - manifest - result["duration"] - after), 3), "manifest": manifest,
            "restic": restic, "record": round(record, 3), "after": after}


def _base_env() -> dict:
    """A plain environment: PATH, HOME, locale; no AWS_* or RESTIC_* leaking in from the caller."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}


def _last_summary(stdout: bytes) -> dict:
    for line in reversed(stdout.splitlines()):
        if b'"message_type":"summary"' in line:
            return json.loads(line)
    return {}


#: backupd's backup action in one long-lived process, as the daemon runs a scheduled job (no interpreter
#: start-up, imports or policy load per run); one line on stdin runs it, one JSON line answers.
IN_PROCESS = """
import json, sys, time
from backupd.commands.common import load_config, load_policies
from backupd.actions import backup
cfg = load_config(sys.argv[1])
policy_set = load_policies(cfg)
print("ready", flush=True)
for _ in sys.stdin:
    t0 = time.monotonic()
    (r,) = backup.run(cfg, policy_set, "data")
    print(json.dumps({"seconds": time.monotonic() - t0, "status": r.status, "files": r.files}), flush=True)
"""


class InProcess:
    """The daemon's path: IN_PROCESS started once per round on the round's backupd config and repository."""

    def __init__(self, rnd: Round):
        self.proc = subprocess.Popen([sys.executable, "-c", IN_PROCESS, str(rnd.config)], env=rnd.cli_env, cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(rnd.log, "ab"),
                                     text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise BenchError(f"round {rnd.number}: the in-process backup did not start (see {rnd.log})")

    def __call__(self, case: str) -> dict:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the in-process backup ended")
        doc = json.loads(line)
        if doc["status"] != "ok":
            raise BenchError(f"in-process backup {case}: {doc['status']}")
        return {"seconds": doc["seconds"], "files": doc["files"]}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=STEP_TIMEOUT)


def measure(rnd: Round, case: str, order: list[str], dropped: list[bool]) -> dict:
    """Time `case` for both tools in `order`; the page cache is dropped before each first backup.

    An unchanged re-run is short and so noisier: it is repeated RERUNS times (order alternating)
    and each tool's median counts; `samples` keeps every pair.
    """
    tools = order + (["daemon"] if case == "rerun" else [])  # the daemon's path: re-runs only (one repository)
    samples = []
    for i in range(1 if case == "first" else RERUNS):
        pair = {}
        for tool in (tools if i % 2 == 0 else tools[::-1]):
            if case == "first":
                dropped.append(drop_caches())
            pair[tool] = getattr(rnd, tool)(case)
        if any(pair[t]["files"] != pair["raw"]["files"] for t in tools):
            raise BenchError(f"round {rnd.number} {case}: not the same data: "
                             + ", ".join(f"{t} saw {pair[t]['files']} files" for t in tools))
        samples.append(pair)
    out = {tool: {**samples[0][tool], "seconds": statistics.median(p[tool]["seconds"] for p in samples)}
           for tool in tools}
    out["ratio"] = out["backupd"]["seconds"] / out["raw"]["seconds"]
    if "daemon" in out:
        out["daemon_ratio"] = out["daemon"]["seconds"] / out["raw"]["seconds"]
    out["order"] = order
    out["samples"] = [{tool: round(p[tool]["seconds"], 3) for tool in tools} for p in samples]
    return out


def _median(rounds: list[dict], case: str) -> dict:
    raw = statistics.median(r[case]["raw"]["seconds"] for r in rounds)
    bk = statistics.median(r[case]["backupd"]["seconds"] for r in rounds)
    ratio = statistics.median(r[case]["ratio"] for r in rounds)
    out = {"raw_seconds": raw, "backupd_seconds": bk, "ratio": ratio, "target": TARGETS[case],
           "meets_target": ratio <= TARGETS[case]}
    if all("daemon" in r[case] for r in rounds):
        out["daemon_seconds"] = statistics.median(r[case]["daemon"]["seconds"] for r in rounds)
        out["daemon_ratio"] = statistics.median(r[case]["daemon_ratio"] for r in rounds)
    return out


def benchmark(size_gb: float, workdir: Path, rounds: int, log=print) -> dict:
    """Run the whole benchmark; returns the result document."""
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    dataset = generate(workdir / "data", size_gb)
    log(f"data set: {dataset['files']} files, {dataset['bytes'] / 2**30:.2f} GiB "
        f"({'reused' if dataset['reused'] else 'generated'} in {time.monotonic() - t0:.1f}s) at {workdir / 'data'}")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    secrets = run_dir / "secrets"
    fillers = run_dir / "filler"
    fillers.mkdir()
    (fillers / "README").write_text("filler target: only here so the policy lints clean\n")
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    results, dropped = [], []
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=[BUCKET]) as seaweed:
            seaweed.create_locked_bucket(BUCKET, days=1)
            log(f"SeaweedFS up at {seaweed.endpoint} in {seaweed.startup_seconds:.1f}s; bucket {BUCKET} (Object Lock)")
            for n in range(1, rounds + 1):
                rnd = Round(n, run_dir, seaweed, workdir / "data", secrets, fillers)
                rnd.init()
                order = ["raw", "backupd"] if n % 2 else ["backupd", "raw"]
                row = {"round": n}
                for case in CASES:
                    if case == "rerun":
                        rnd.daemon = InProcess(rnd)
                    row[case] = measure(rnd, case, order, dropped)
                    log(f"round {n} {CASE_TITLES[case]:<16} raw {row[case]['raw']['seconds']:6.2f}s  "
                        f"backupd {row[case]['backupd']['seconds']:6.2f}s  ratio {row[case]['ratio']:.3f}")
                rnd.daemon.close()
                results.append(row)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"dataset": dataset, "rounds": results, "median": {c: _median(results, c) for c in CASES},
            "targets": TARGETS, "page_cache_dropped": bool(dropped) and all(dropped),
            "restic": _restic_version(), "total_seconds": round(time.monotonic() - t0, 1)}


def _restic_version() -> str:
    done = subprocess.run(["restic", "version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def print_table(doc: dict) -> None:
    rows = [("case", "round", "order", "raw restic s", "backupd s", "ratio")]
    for case in CASES:
        for r in doc["rounds"]:
            m = r[case]
            rows.append((CASE_TITLES[case], str(r["round"]), ">".join(m["order"]), f"{m['raw']['seconds']:.2f}",
                         f"{m['backupd']['seconds']:.2f}", f"{m['ratio']:.3f}"))
            if "daemon" in m:
                rows.append((f"{CASE_TITLES[case]}, daemon", str(r["round"]), "", f"{m['raw']['seconds']:.2f}",
                             f"{m['daemon']['seconds']:.2f}", f"{m['daemon_ratio']:.3f}"))
        med = doc["median"][case]
        if "daemon_ratio" in med:
            rows.append((f"{CASE_TITLES[case]}, daemon", "median", "", f"{med['raw_seconds']:.2f}",
                         f"{med['daemon_seconds']:.2f}", f"{med['daemon_ratio']:.3f}"))
        verdict = "ok" if med["meets_target"] else "MISSED"
        rows.append((CASE_TITLES[case], "median", "", f"{med['raw_seconds']:.2f}", f"{med['backupd_seconds']:.2f}",
                     f"{med['ratio']:.3f} ({verdict}, target <= {med['target']:.2f})"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("\nbackupd's phases (seconds, median over rounds; raw restic's own run for comparison):")
    for case in CASES:
        runs = [r[case]["backupd"].get("phases") or {} for r in doc["rounds"]]
        names = ("start-up", "manifest", "restic", "record", "after")
        cells = "  ".join(f"{n} {statistics.median(p.get(n, 0.0) for p in runs):.3f}" for n in names)
        raw = statistics.median(r[case]["raw"]["seconds"] for r in doc["rounds"])
        print(f"  {CASE_TITLES[case]:<16} {cells}  | raw restic {raw:.3f}")
    ds = doc["dataset"]
    print(f"\ndata: {ds['files']} files, {ds['bytes'] / 2**30:.2f} GiB; {doc['restic']}; page cache dropped "
          f"before first backups: {'yes' if doc['page_cache_dropped'] else 'no (not permitted)'}; "
          f"total {doc['total_seconds']}s")


def run_bench(as_json: bool, call, render) -> int:
    """The benches' common ending: restic on PATH, `call(log)` with progress on stderr (none with --json),
    then one JSON document or `render(doc)`. Exit 0 measured, 1 a step failed, 3 could not start."""
    if shutil.which("restic") is None:
        print("restic not found on PATH", file=sys.stderr)
        return 3
    quiet = (lambda *_: None) if as_json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        doc = call(quiet)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # SeaweedFS or PostgreSQL missing or not starting
        print(f"benchmark could not start: {exc}", file=sys.stderr)
        return 3
    if as_json:
        print(json.dumps(doc, indent=1))
    else:
        render(doc)
    return 0


def sized_main(argv: list[str] | None, module: str, doc: str, *, rounds: int, repositories: str, benchmark,
               render) -> int:
    """A bench's command line over one generated data set (--size-gb, --workdir, --rounds, --json), then
    run_bench(): `benchmark(size_gb, workdir, rounds, log)` -> doc, `render(doc)`."""
    ap = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="data set size in GiB (default 1.0)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench",
                    help=f"keeps the data set for reuse; the run's {repositories} removed at the end")
    ap.add_argument("--rounds", type=int, default=rounds, help=f"rounds, order alternating (default {rounds})")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = ap.parse_args(argv)
    if not 0.01 <= args.size_gb <= 64 or not 1 <= args.rounds <= 9:
        ap.error("--size-gb must be within 0.01..64 and --rounds within 1..9")
    return run_bench(args.json, lambda log: benchmark(args.size_gb, args.workdir.resolve(), args.rounds, log),
                     render)


def main(argv: list[str] | None = None) -> int:
    return sized_main(argv, "bench.backup_vs_restic", __doc__, rounds=2, repositories="repositories are",
                      benchmark=benchmark, render=print_table)


if __name__ == "__main__":
    sys.exit(main())
