"""The whole local stack for the demo and integration tests: SeaweedFS (Object Lock), PostgreSQL with the TOS
database, the TOS file tree, secrets and a backupd config.

Usage::

    with LocalStack(tmp_path, containers=2000) as stack:
        cfg = stack.write_config(Path("policies"))
        subprocess.run(["backupd", "--config", str(cfg), "backup"], env={**os.environ, **stack.env})

Run `python -m demo.stack [WORKDIR] [--containers N] [--cluster]` to bring it up once and print startup timings.
`cluster=True` (`--cluster`) runs a distributed SeaweedFS instead of `weed mini` (demo/cluster.py: master,
3 volume servers with replication 001, filer, S3 gateway), for tests that lose a storage node.
"""
from __future__ import annotations

import argparse
import json
import secrets
import shlex
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from demo._util import Service, write_secret
from demo.postgres import PostgresCluster
from demo.cluster import SeaweedCluster
from demo.seaweed import SeaweedFS, host_writer
from demo.tos_data import create_tos_database
from demo.tos_files import generate_tree

BUCKET = "backupd-tos"
#: Bucket names the stack's S3 identities also cover but the stack does not create: `backupd storage init`
#: creates them with the admin keys in tests (SeaweedFS grants per bucket name, read once at start).
SPARE_BUCKETS = ("backupd-site", "backupd-unlocked")
HOST = "demo-tos-01"


class LocalStack(Service):
    """SeaweedFS + PostgreSQL + TOS data under `workdir`; every process stops on exit (and at interpreter exit)."""

    def __init__(self, workdir: Path, containers: int = 100_000, lock_days: int = 1, seed: int = 7,
                 tree_scale: float = 1.0, cluster: bool = False, confined_writer: bool = False):
        self.workdir = Path(workdir).resolve()
        self.containers, self.lock_days, self.seed, self.tree_scale = containers, lock_days, seed, tree_scale
        self.cluster = cluster
        #: True: s3-writer.env holds HOST's own writer (the shipped per-host template: restic/, evidence/HOST/,
        #: its incident marker), as `storage init` prints it; False: the generic test writer of every bucket.
        self.confined_writer = confined_writer
        self.secrets_dir = self.workdir / "secrets"
        self.state_dir = self.workdir / "state"
        self.tos_root = self.workdir / "tos"
        self.bucket = BUCKET
        self.seaweed: SeaweedFS | SeaweedCluster | None = None
        self.postgres: PostgresCluster | None = None
        self.facts: dict[str, int] = {}
        self.tree: dict[str, str] = {}
        self.timings: dict[str, float] = {}

    def start(self) -> None:
        """Bring everything up; SeaweedFS starts in a thread while the database and files are generated."""
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secrets_dir.mkdir(mode=0o700, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        write_secret(self.secrets_dir / "restic-password", secrets.token_urlsafe(32) + "\n")
        storage = SeaweedCluster if self.cluster else SeaweedFS
        extra = {"writer": host_writer(BUCKET, HOST, ["restic"])} if self.confined_writer else None
        self.seaweed = storage(self.workdir / "seaweedfs", secrets_dir=self.secrets_dir,
                               buckets=[BUCKET, *SPARE_BUCKETS], extra_identities=extra)
        self.postgres = PostgresCluster(self.workdir / "postgres")
        with ThreadPoolExecutor(max_workers=1) as pool:
            s3_ready = pool.submit(self._start_seaweed)
            self._timed("postgres", self.postgres.start)
            self.facts = self._timed("tos_database", lambda: create_tos_database(
                self.postgres, "tos", containers=self.containers, seed=self.seed))
            self.tree = self._timed("tos_files", lambda: generate_tree(self.tos_root, self.seed, self.tree_scale))
            s3_ready.result(timeout=120)
        self.timings["total"] = time.monotonic() - t0

    def _start_seaweed(self) -> None:
        t0 = time.monotonic()
        self.seaweed.start()
        self.seaweed.create_locked_bucket(BUCKET, self.lock_days)
        self.timings["seaweedfs"] = time.monotonic() - t0

    def _timed(self, name: str, fn):
        t0 = time.monotonic()
        result = fn()
        self.timings[name] = time.monotonic() - t0
        return result

    def stop(self) -> None:
        """Stop PostgreSQL and SeaweedFS (idempotent)."""
        for part in (self.postgres, self.seaweed):
            if part is not None:
                part.stop()

    @property
    def env(self) -> dict[str, str]:
        """Variables for policy interpolation (`${TOS_ROOT}` etc.)."""
        return {"BACKUPD_S3_ENDPOINT": self.seaweed.endpoint, "BACKUPD_S3_BUCKET": BUCKET,
                "TOS_ROOT": str(self.tos_root), "TOS_PGHOST": self.postgres.host,
                "TOS_PGPORT": str(self.postgres.port), "TOS_PGDATABASE": "tos", "TOS_PGUSER": self.postgres.user}

    def write_config(self, policy_dir: Path) -> Path:
        """Write `workdir/backupd.yaml` pointing at `policy_dir/*.yaml`; return its path."""
        q = json.dumps  # a JSON string is a valid YAML scalar
        text = (f"policies:\n  - {q(str(Path(policy_dir).resolve() / '*.yaml'))}\n"
                f"state_dir: {q(str(self.state_dir))}\nsecrets_dir: {q(str(self.secrets_dir))}\nhost: {HOST}\n")
        path = self.workdir / "backupd.yaml"
        path.write_text(text)
        return path


def serve(stack: LocalStack) -> None:
    """Print the shell environment that points backupd at the stack, then wait for Ctrl-C or SIGTERM."""
    config = stack.write_config(Path(__file__).resolve().parents[1] / "policies")  # the shipped terminal policy
    env = {**stack.env, "BACKUPD_CONFIG": str(config)}
    print("# the stack is up; in another shell:")
    print("\n".join(f"export {name}={shlex.quote(value)}" for name, value in env.items()))
    print("# e.g. backupd policy lint && backupd backup && backupd drill && backupd audit storage", flush=True)
    print("stack: serving until Ctrl-C or SIGTERM", file=sys.stderr, flush=True)

    def stop(signum, _frame):
        raise KeyboardInterrupt  # leaves the `with` block: every service is stopped

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        print("stack: stopping", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Start the stack once, print timings, endpoints and row counts, then stop it (with --serve: keep it up
    until Ctrl-C or SIGTERM, printing the environment that points backupd at it)."""
    ap = argparse.ArgumentParser(prog="python -m demo.stack")
    ap.add_argument("workdir", nargs="?", type=Path)
    ap.add_argument("--containers", type=int, default=100_000)
    ap.add_argument("--serve", action="store_true", help="keep the stack up until Ctrl-C or SIGTERM")
    ap.add_argument("--cluster", action="store_true",
                    help="distributed SeaweedFS (master, 3 volume servers, filer, S3 gateway) instead of weed mini")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="backupd-stack-"))
    with LocalStack(workdir, containers=args.containers, cluster=args.cluster) as stack:
        print(json.dumps({"workdir": str(workdir), "env": stack.env, "facts": stack.facts,
                          "seaweedfs": "cluster" if args.cluster else "mini",
                          "timings_s": {k: round(v, 2) for k, v in stack.timings.items()}}, indent=2))
        if args.serve:
            serve(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
