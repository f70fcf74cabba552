"""Integration tests of the local stack (demo/): real SeaweedFS, PostgreSQL, TOS data and file trees."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # repo root, for `demo` (not an installed package)
from demo import tos_data, tos_files
from demo.stack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A small stack (2,000 containers, small file tree) shared by this module."""
    with LocalStack(tmp_path_factory.mktemp("stack"), containers=2000, tree_scale=0.1) as s:
        yield s


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _tcp_listeners(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP LISTEN socket held by `pid`, from /proc/net/tcp and tcp6."""
    mine, found = _socket_inodes(pid), []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in mine:
                continue
            addr_hex, port_hex = fields[1].split(":")
            if len(addr_hex) == 8:
                addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
            else:
                addr = "ipv6:" + addr_hex
            found.append((addr, int(port_hex, 16)))
    return found


def test_seaweedfs_listens_on_loopback_only(stack):
    listeners = _tcp_listeners(stack.seaweed.proc.pid)
    assert ("127.0.0.1", stack.seaweed.ports["s3"]) in listeners
    assert {addr for addr, _ in listeners} == {"127.0.0.1"}, listeners
    assert {port for _, port in listeners} <= set(stack.seaweed.ports.values()), listeners


def test_locked_version_delete_is_refused_for_writer(stack):
    s3 = stack.seaweed.client("writer")
    put = s3.put_object(Bucket=stack.bucket, Key="canary/locked", Body=b"canary")
    head = s3.head_object(Bucket=stack.bucket, Key="canary/locked", VersionId=put["VersionId"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=stack.bucket, Key="canary/locked", VersionId=put["VersionId"])
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    body = s3.get_object(Bucket=stack.bucket, Key="canary/locked", VersionId=put["VersionId"])["Body"].read()
    assert body == b"canary"


def test_auditor_cannot_write_but_can_read(stack):
    auditor = stack.seaweed.client("auditor")
    with pytest.raises(ClientError) as err:
        auditor.put_object(Bucket=stack.bucket, Key="auditor/attempt", Body=b"x")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    auditor.list_objects_v2(Bucket=stack.bucket)


def test_secret_files_are_private(stack):
    names = {p.name for p in stack.secrets_dir.iterdir()}
    assert {"restic-password", "s3-admin.env", "s3-writer.env", "s3-maintainer.env", "s3-auditor.env"} <= names
    for path in stack.secrets_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert "AWS_SECRET_ACCESS_KEY=" in (stack.secrets_dir / "s3-writer.env").read_text()


def test_restic_backup_with_writer_keys(stack, tmp_path):
    assert shutil.which("restic"), "restic is missing: scripts/setup.sh installs it"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
           "RESTIC_PASSWORD_FILE": str(stack.secrets_dir / "restic-password"),
           "RESTIC_REPOSITORY": f"s3:{stack.env['BACKUPD_S3_ENDPOINT']}/{stack.bucket}/smoke"}
    for line in (stack.secrets_dir / "s3-writer.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    for argv in (["restic", "init"], ["restic", "backup", "--json", str(stack.tos_root / "docs")]):
        res = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr


def test_postgres_has_no_tcp_listener_and_counts_match(stack):
    pg = stack.postgres
    postmaster = int((pg.datadir / "postmaster.pid").read_text().split()[0])
    assert _tcp_listeners(postmaster) == []
    assert Path(pg.host, f".s.PGSQL.{pg.port}").is_socket()
    assert tos_data.row_counts(pg, "tos") == stack.facts
    assert stack.facts["containers"] == 2000


def test_pg_dump_over_socket(stack):
    env = {**os.environ, "PGHOST": stack.env["TOS_PGHOST"], "PGPORT": stack.env["TOS_PGPORT"]}
    res = subprocess.run(["pg_dump", "-U", "postgres", "--schema-only", "tos"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "CREATE TABLE public.containers" in res.stdout


def test_container_numbers_have_valid_check_digits(stack):
    rows = stack.postgres.psql("SELECT number FROM containers ORDER BY id LIMIT 200", "tos")
    for (number,) in rows:
        assert int(number[10]) == tos_data.check_digit(number[:10]), number
    assert tos_data.check_digit("CSQU305438") == 3  # ISO 6346 worked example


def test_database_advance_day_changes_a_few_percent(stack):
    before = tos_data.create_tos_database(stack.postgres, "tos_days", containers=1000, seed=3)
    after = tos_data.advance_day(stack.postgres, "tos_days", day=1, seed=3)
    assert after["containers"] == before["containers"] + 10
    assert before["container_events"] < after["container_events"] < before["container_events"] * 1.1
    assert after["vessels"] == before["vessels"]


def test_generate_tree_is_deterministic(tmp_path):
    first = tos_files.generate_tree(tmp_path / "a", seed=7, scale=0.05)
    second = tos_files.generate_tree(tmp_path / "b", seed=7, scale=0.05)
    assert first == second
    assert tos_files.generate_tree(tmp_path / "c", seed=8, scale=0.05) != first
    tos_server = tmp_path / "a/programs/production/bin/tos-server"
    out = subprocess.run([str(tos_server), "--version"], capture_output=True, text=True, timeout=10).stdout
    assert out.startswith("tos-server ")


def _logs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.glob("logs/**/*.log*")}


def test_advance_day_only_appends_to_logs(tmp_path):
    root = tmp_path / "tree"
    tos_files.generate_tree(root, scale=0.05)
    old = _logs(root)
    tos_files.advance_day(root, 1)
    new = _logs(root)
    assert set(old) == set(new)
    for rel, content in old.items():
        assert new[rel].startswith(content), rel
    assert any(len(new[r]) > len(old[r]) for r in old)


def test_log_rotation_keeps_old_content(tmp_path, monkeypatch):
    root = tmp_path / "tree"
    tos_files.generate_tree(root, scale=0.05)
    old = _logs(root)
    monkeypatch.setattr(tos_files, "ROTATE_BYTES", 1)
    tos_files.advance_day(root, 1)
    new = _logs(root)
    for rel in tos_files.LOGS:
        assert new[f"{rel}.1"] == old[rel]
        assert new[f"{rel}.2"] == old[f"{rel}.1"]
