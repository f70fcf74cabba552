"""Idle footprint of `backupd daemon`: resident memory, CPU and wake-ups while it waits for the next run.

    python -m bench.daemon_idle [--targets 12] [--idle-seconds 60] [--workdir DIR] [--json]

Starts SeaweedFS (Object-Lock bucket, 127.0.0.1 only), writes a policy of `--targets` small daily
targets (a few KiB each, every guideline category present), runs the real `backupd daemon` until every
target has one successful backup in state, then samples the daemon process over `--idle-seconds`:
VmRSS from /proc/<pid>/status (every second; peak and last) and utime+stime from /proc/<pid>/stat
(start and end; the CPU of finished restic children is not counted), and wake-ups: the context switches
of all its threads (/proc/<pid>/task/*/status, voluntary + involuntary) over the window, per minute.
Prints RSS MB, CPU % and wake-ups per minute against the targets (< 60 MB, < 0.2 % CPU; an idle daemon
sleeps until its next due job, so wake-ups stay near zero). Everything is stopped and removed in a `finally`.
Exit codes: 0 measured (whatever the figures), 1 a step failed, 2 bad arguments, 3 SeaweedFS or
restic unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench"
HOST = "bench-host"
TARGET_RSS_MB = 60.0
TARGET_CPU_PERCENT = 0.2
BACKUP_BOUND = 600.0  # seconds the first round of backups may take
STOP_BOUND = 60.0
SETTLE = 5.0  # seconds between the last first backup and the idle window
CLK_TCK = os.sysconf("SC_CLK_TCK")

HEAD = """version: 1
site: {{name: Benchmark Terminal, port: other}}
destinations:
  worm:
    kind: s3
    endpoint: {endpoint}
    bucket: {bucket}
    path: daemon-idle
    object_lock: true
    credentials_file: s3-writer.env
    password_file: restic-password
targets:
"""
TARGET = """  - name: {name}
    category: {category}
{extra}    owner: bench
    sources: {{paths: ['{path}']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""
#: Cycled over the targets so the policy lints clean (all required categories present).
KINDS = (("system_program", "    environment: production\n"), ("system_program", "    environment: development\n"),
         ("system_program", "    environment: evaluation\n"), ("container_data", ""),
         ("logs", "    source: server\n"), ("logs", "    source: network_device\n"),
         ("control_system", ""), ("documentation", ""))


class BenchError(RuntimeError):
    """A step failed; the message says which and why (never secrets)."""


def write_policy(run_dir: Path, endpoint: str, secrets: Path, count: int) -> Path:
    """`count` targets over small source trees; returns the backupd.yaml path."""
    pdir, data = run_dir / "policies", run_dir / "data"
    pdir.mkdir()
    text = HEAD.format(endpoint=endpoint, bucket=BUCKET)
    for i in range(count):
        src = data / f"t{i:02d}"
        src.mkdir(parents=True)
        for j in range(5):
            (src / f"file-{j}.txt").write_text(f"target {i} file {j}\n" * (50 * (j + 1)))
        category, extra = KINDS[i % len(KINDS)]
        text += TARGET.format(name=f"t{i:02d}", category=category, extra=extra, path=src)
    (pdir / "idle.yaml").write_text(text)
    config = run_dir / "backupd.yaml"
    config.write_text(f"policies: ['{pdir}/*.yaml']\nstate_dir: '{run_dir / 'state'}'\n"
                      f"secrets_dir: '{secrets}'\nhost: {HOST}\nretry_attempts: 1\n"
                      "daemon: {jitter_seconds: 0}\nmetrics: {listen: '127.0.0.1:0'}\n")
    return config


def backed_up(state_dir: Path, count: int) -> int:
    """How many of the targets have a successful backup in state (read-only query)."""
    import sqlite3
    from contextlib import closing

    path = state_dir / "state.sqlite"
    if not path.exists():
        return 0
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as db:
        row = db.execute("SELECT COUNT(DISTINCT target) FROM runs WHERE job='backup' AND status='ok'").fetchone()
    return min(row[0], count)


def rss_kib(pid: int) -> int:
    """VmRSS of pid in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid itself (fields 14 and 15 of /proc/<pid>/stat), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of pid: each is one wake-up."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                total += int(line.split()[1])
    return total


def wait_backups(proc: subprocess.Popen, state_dir: Path, count: int, log) -> float:
    """Bounded wait until every target backed up once; returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < BACKUP_BOUND:
        if proc.poll() is not None:
            raise BenchError(f"the daemon exited with {proc.returncode} before backing up every target")
        done = backed_up(state_dir, count)
        if done == count:
            return time.monotonic() - t0
        time.sleep(1.0)
    raise BenchError(f"only {backed_up(state_dir, count)}/{count} targets backed up after {BACKUP_BOUND:.0f}s")


def sample_idle(proc: subprocess.Popen, seconds: float) -> dict:
    """RSS every second and CPU time over `seconds` of idle."""
    pid, rss = proc.pid, []
    cpu0, switches0, t0 = cpu_seconds(pid), context_switches(pid), time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the daemon exited with {proc.returncode} while idle")
        rss.append(rss_kib(pid))
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    cpu1, switches1, wall = cpu_seconds(pid), context_switches(pid), time.monotonic() - t0
    rss.append(rss_kib(pid))
    return {"seconds": round(wall, 1), "samples": len(rss), "rss_mb": round(rss[-1] / 1024, 1),
            "rss_peak_mb": round(max(rss) / 1024, 1), "cpu_seconds": round(cpu1 - cpu0, 3),
            "cpu_percent": round(100 * (cpu1 - cpu0) / wall, 3),
            "wakeups_per_minute": round(60 * max(0, switches1 - switches0) / wall, 2)}


def stop(proc: subprocess.Popen | None) -> int | None:
    """SIGTERM the daemon (it cancels cleanly), SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=STOP_BOUND)


def benchmark(count: int, idle: float, workdir: Path, log=print) -> dict:
    """Run the whole benchmark; returns the result document."""
    from demo._util import write_secret
    from demo.seaweed import SeaweedFS

    workdir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="idle-", dir=workdir))
    secrets = run_dir / "secrets"
    write_secret(secrets / "restic-password", os.urandom(24).hex() + "\n")
    proc = None
    try:
        with SeaweedFS(run_dir / "seaweedfs", secrets_dir=secrets, buckets=[BUCKET]) as seaweed:
            seaweed.create_locked_bucket(BUCKET, days=1)
            log(f"SeaweedFS up at {seaweed.endpoint}; {count} daily targets")
            config = write_policy(run_dir, seaweed.endpoint, secrets, count)
            env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ") if k in os.environ}
            with open(run_dir / "daemon.log", "wb") as err:
                proc = subprocess.Popen([sys.executable, "-m", "backupd", "daemon", "--config", str(config)],
                                        env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            first = wait_backups(proc, run_dir / "state", count, log)
            time.sleep(SETTLE)  # the last job's bookkeeping (state, alerts, metrics) is not idle time
            log(f"every target backed up once in {first:.1f}s; sampling {idle:.0f}s idle (pid {proc.pid})")
            result = sample_idle(proc, idle)
            code = stop(proc)
            if "Traceback" in (run_dir / "daemon.log").read_text(errors="replace"):
                raise BenchError("the daemon printed a traceback; see its log")
    finally:
        stop(proc)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"targets": count, "first_backups_seconds": round(first, 1), "idle": result, "stop_exit_code": code,
            "target_rss_mb": TARGET_RSS_MB, "target_cpu_percent": TARGET_CPU_PERCENT,
            "meets_rss": result["rss_peak_mb"] < TARGET_RSS_MB,
            "meets_cpu": result["cpu_percent"] < TARGET_CPU_PERCENT}


def print_summary(doc: dict) -> None:
    idle = doc["idle"]
    verdict = lambda ok: "ok" if ok else "MISSED"  # noqa: E731
    print(f"backupd daemon idle, {doc['targets']} targets, {idle['seconds']:.0f}s after the first backups")
    print(f"  RSS  {idle['rss_mb']:6.1f} MB (peak {idle['rss_peak_mb']:.1f} MB)  "
          f"target < {doc['target_rss_mb']:.0f} MB: {verdict(doc['meets_rss'])}")
    print(f"  CPU  {idle['cpu_percent']:6.3f} % ({idle['cpu_seconds']:.2f}s CPU)  "
          f"target < {doc['target_cpu_percent']:g} %: {verdict(doc['meets_cpu'])}")
    print(f"  wake-ups {idle['wakeups_per_minute']:.1f} per minute (all threads' context switches)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.daemon_idle", description=__doc__.split("\n")[0])
    ap.add_argument("--targets", type=int, default=12)
    ap.add_argument("--idle-seconds", type=float, default=60.0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "backupd-bench")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if not 1 <= args.targets <= 200 or not 5 <= args.idle_seconds <= 3600:
        ap.error("--targets must be 1-200 and --idle-seconds 5-3600")
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if shutil.which("restic") is None:
        print("error: restic not found on PATH", file=sys.stderr)
        return 3
    try:
        doc = benchmark(args.targets, args.idle_seconds, args.workdir, log)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as exc:
        print(f"error: SeaweedFS unavailable: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print_summary(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
