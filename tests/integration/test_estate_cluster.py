"""An estate of four TOS hosts on a distributed SeaweedFS (demo/cluster.py: master, 3 volume servers with
replication 001, filer, S3 gateway) that loses a volume server (SIGKILL) while the hosts back up concurrently
into one Object-Lock bucket. Every backup succeeds or fails clearly and then succeeds on its retry; every
snapshot restores byte-identical; the storage audit passes or names what it cannot prove; the auditor's
`evidence pull --all-hosts` verifies every host and its estate report lists all four."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from demo.stack import LocalStack
from tests.integration.conftest import FILLER, POLICY_HEAD, ROOT, Run
from tests.integration.test_stack import _tcp_listeners

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

HOSTS = [f"tos-{site}-{n:02d}" for site in ("east", "west") for n in (1, 2)]
#: Two sites of two hosts; the site of each host comes from its runbook record.
SITES = {h: ("East Terminal" if "east" in h else "West Terminal") for h in HOSTS}
TARGET = """  - name: files
    category: container_data
    owner: test
    sources: {{paths: ['{tree}']}}
    frequency: 1d
    rto: 8h
    retention: {{keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""
KEYS = ("    credentials_file: s3-writer.env\n",
        "    credentials_file: s3-writer.env\n    auditor_credentials_file: s3-auditor.env\n"
        "    canary_credentials_file: s3-canary.env\n    maintainer_credentials_file: s3-maintainer.env\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalStack(tmp_path_factory.mktemp("cluster"), containers=200, tree_scale=0.05, lock_days=42,
                    cluster=True) as s:
        yield s


class Host:
    """One TOS host: its own tree, policy, config, state directory and host name, on the cluster's bucket."""

    def __init__(self, stack: LocalStack, base: Path, name: str):
        self.stack, self.name, self.dir = stack, name, base / name
        self.tree = self.dir / "tree"
        self.tree.mkdir(parents=True)
        for i in range(24):  # a few MiB of incompressible data in files of varied size
            (self.tree / f"d{i % 3}").mkdir(exist_ok=True)
            (self.tree / f"d{i % 3}" / f"f{i}.bin").write_bytes(os.urandom(30_000 + i * 40_000))
        pdir = self.dir / "policies"
        pdir.mkdir()
        head = POLICY_HEAD.format(endpoint=stack.seaweed.endpoint, repo_path=f"estate/{name}").replace(*KEYS)
        head = head.replace("site: {name: Test Terminal, port: other}", f"site: {{name: {SITES[name]}, port: other}}")
        (pdir / "p.yaml").write_text(head + TARGET.format(tree=self.tree) + FILLER.format(root=stack.tos_root))
        self.config = self.dir / "backupd.yaml"
        self.config.write_text("\n".join([
            f"policies: ['{pdir}/*.yaml']", f"state_dir: '{self.dir / 'state'}'",
            f"secrets_dir: '{stack.secrets_dir}'", f"host: {name}", "retry_attempts: 1",
            "evidence: {mirror: worm}"]) + "\n")

    def cli(self, *args: str) -> Run:
        return _cli(self.stack, self.config, *args)


def _cli(stack: LocalStack, config: Path, *args: str, timeout: float = 600) -> Run:
    """The real backupd CLI as a subprocess with `config`."""
    env = {**os.environ, **stack.env, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "backupd", *args, "--config", str(config)],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _stored(volume_dir: Path) -> int:
    """Needle bytes in a volume server's .dat files (each starts with an 8-byte superblock)."""
    return sum(max(p.stat().st_size - 8, 0) for p in volume_dir.glob("*.dat"))


#: Kill the volume server once it holds this much (a data pack's replica, not only repository config).
VICTIM_BYTES = 512 * 1024


def _wait_for_packs(stack: LocalStack, futures, victim: int) -> None:
    """Until a host has written a data pack (the backups are under way) and the victim volume server holds
    VICTIM_BYTES, or every backup ended; bounded."""
    s3 = stack.seaweed.client("admin")
    for _ in range(600):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.bucket, Prefix="estate/").get("Contents", [])]
        if any("/data/" in k for k in keys) and _stored(stack.seaweed.workdir / f"volume{victim}") >= VICTIM_BYTES:
            return
        if all(f.done() for f in futures):
            return
        time.sleep(0.2)


def _clear_failure(run: Run) -> list[str]:
    """The error texts of a failed backup: exit 1 (finding) or 3 (storage unavailable), each failed result
    naming its target and saying what went wrong."""
    assert run.code in (1, 3), run.stdout + run.stderr
    failed = [r for r in run.doc["results"] if r["status"] != "ok"]
    assert failed, run.stdout
    for r in failed:
        assert r["error"] and r["target"], r
    return [f"{r['target']}: {r['status']}: {r['error'][:160]}" for r in failed]


def test_every_cluster_process_listens_on_loopback_only(cluster):
    sw = cluster.seaweed
    for name, proc in sw.procs.items():
        listeners = _tcp_listeners(proc.pid)
        assert {("127.0.0.1", sw.ports[name]), ("127.0.0.1", sw.ports[f"{name}_grpc"])} <= set(listeners), name
        assert {addr for addr, _ in listeners} == {"127.0.0.1"}, (name, listeners)


def test_four_hosts_back_up_through_a_volume_server_loss_and_the_estate_verifies(cluster, tmp_path):
    hosts = [Host(cluster, tmp_path, name) for name in HOSTS]
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = [pool.submit(h.cli, "backup", "--json") for h in hosts]
        _wait_for_packs(cluster, futures, victim=1)
        cluster.seaweed.kill_volume_server(1)
        killed_at = time.time()
        first = [f.result() for f in futures]
    assert cluster.seaweed.volume_servers_alive() == [0, 2]
    lost = _stored(cluster.seaweed.workdir / "volume1")
    assert lost > 0  # the lost node held replicas: restores below must read them from the surviving copy

    observed = {}
    for host, run in zip(hosts, first):
        if run.code != 0:
            observed[host.name] = _clear_failure(run)
            retry = host.cli("backup", "--json")
            assert retry.code == 0, retry.stdout + retry.stderr
    after = {h.name: _records_after(h, killed_at) for h in hosts}
    print("node loss:", json.dumps({"failed": observed, "backup records after the kill": after,
                                    "bytes on the lost node": lost, "workdir": str(cluster.workdir)},
                     indent=1))  # shown with -s

    for host in hosts:  # a backup on the degraded cluster; the runbook records the host's site
        run = host.cli("backup", "--target", "files", "--json")
        assert run.code == 0, run.stdout + run.stderr
        assert host.cli("runbook", "--out", str(host.dir / "runbook")).code == 0

    for host in hosts:
        want = _hashes(host.tree)
        snaps = _snapshots(host)
        assert len(snaps) >= 2
        for sid in snaps:
            out = host.dir / f"restore-{sid[:8]}"
            run = host.cli("restore", "--target", "files", "--snapshot", sid, "--to", str(out), "--json")
            assert run.code == 0, run.stdout + run.stderr
            assert _hashes(out / str(host.tree).lstrip("/")) == want

    audit = hosts[0].cli("audit", "storage", "--json")
    assert audit.code in (0, 1), audit.stdout + audit.stderr
    for dest in audit.doc["destinations"]:
        for check in dest.get("checks", []):
            assert check["ok"] or check["detail"], check  # a failed check says what it could not prove
    print("audit:", audit.code, [c["name"] for d in audit.doc["destinations"] for c in d.get("checks", [])
                                 if not c["ok"]])

    for host in hosts:  # records written while a replica was down may still be pending
        sync = host.cli("evidence", "sync", "--json")
        assert sync.code == 0 and sync.doc["pending"] == 0, sync.stdout + sync.stderr

    out = tmp_path / "estate"
    auditor = _auditor_config(hosts[0], tmp_path / "auditor")
    run = _cli(cluster, auditor, "evidence", "pull", "--destination", "worm", "--out", str(out), "--all-hosts",
               "--json")
    assert run.code == 0, run.stdout + run.stderr
    assert sorted(h["host"] for h in run.doc["hosts"] if h["ok"]) == sorted(HOSTS)
    estate = run.doc["estate"]
    assert estate["sites"] == {"East Terminal": HOSTS[:2], "West Terminal": HOSTS[2:]}
    for name in HOSTS:
        row = estate["hosts"][name]
        assert row["verified"] and row["backups_ok"] >= 5 and row["generations"] >= 5, row
    doc = json.loads((out / "estate.json").read_text())
    files = next(t for t in doc["hosts"][0]["targets"] if t["name"] == "files")
    assert files["destinations"][0]["count"] == len(_snapshots(hosts[0]))
    html = (out / "estate.html").read_text()
    assert all(name in html for name in HOSTS)
    csv_hosts = {line.split(",")[1] for line in (out / "estate.csv").read_text().splitlines()[1:]}
    assert csv_hosts == set(HOSTS)

    cluster.seaweed.restart_volume_server(1)  # the node comes back with its data directory as it was
    run = hosts[0].cli("backup", "--target", "files", "--json")
    assert run.code == 0, run.stdout + run.stderr


def _auditor_config(model: Host, base: Path) -> Path:
    """An auditor's own config and state: the estate policy (model's), and of the secrets only the read-only
    S3 keys and the repository password (the read-only role's lint needs it; pull never reads it)."""
    secrets = base / "secrets"
    secrets.mkdir(parents=True, mode=0o700)
    for name in ("s3-auditor.env", "restic-password"):
        shutil.copy(model.stack.secrets_dir / name, secrets / name)
        (secrets / name).chmod(0o600)
    config = base / "audit.yaml"
    config.write_text("\n".join([
        "role: verifier", f"policies: ['{model.dir / 'policies'}/*.yaml']", f"state_dir: '{base / 'state'}'",
        f"secrets_dir: '{secrets}'", "host: auditor-01", f"hosts: [{', '.join(HOSTS)}]"]) + "\n")
    return config


def _records_after(host: Host, when: float) -> list[str]:
    """`target status` of the host's backup records written after `when` (a Unix time)."""
    from datetime import datetime

    out = []
    for line in (host.dir / "state" / "evidence" / "ledger.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "backup" and datetime.fromisoformat(rec["time"].replace("Z", "+00:00")).timestamp() > when:
            out.append(f"{rec['data']['target']} {rec['data']['status']}")
    return out


def _snapshots(host: Host) -> list[str]:
    """The ids of the host's `files` snapshots, as its ok backup records name them."""
    ledger = host.dir / "state" / "evidence" / "ledger.jsonl"
    ids = []
    for line in ledger.read_text().splitlines():
        rec = json.loads(line)
        data = rec["data"]
        if rec["kind"] == "backup" and data.get("target") == "files" and data.get("status") == "ok":
            ids.append(data["snapshot_id"])
    return ids
