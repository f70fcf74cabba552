"""The drill's throw-away PostgreSQL server is set up for restore speed: index builds get memory sized to
the machine and the number of concurrent loaders, within what a sandboxed process may map."""

from __future__ import annotations

import pytest

from backupd.errors import DependencyError
from backupd.probes import postgres
from backupd.process import execute
from backupd.process.sandbox import Limits


def _meminfo(tmp_path, available_kib: int):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       32000000 kB\nMemFree:        1000 kB\nMemAvailable:   {available_kib} kB\n")
    return str(path)


LIMIT = Limits().memory  # 2 GiB per process


def test_maintenance_memory_is_a_quarter_of_the_available_memory_shared_by_the_jobs(tmp_path):
    assert postgres.maintenance_mb(1, LIMIT, _meminfo(tmp_path, 2 * 1024 * 1024)) == 512
    assert postgres.maintenance_mb(2, LIMIT, _meminfo(tmp_path, 2 * 1024 * 1024)) == 256


def test_maintenance_memory_stays_within_bounds_and_half_the_sandbox_memory_limit(tmp_path):
    plenty = _meminfo(tmp_path, 64 * 1024 * 1024)  # 64 GiB available
    assert postgres.maintenance_mb(1, LIMIT, plenty) == 1024
    assert postgres.maintenance_mb(1, 512 << 20, plenty) == 256, "a spec's sandbox.memory: 512MiB"
    assert postgres.maintenance_mb(8, LIMIT, _meminfo(tmp_path, 512 * 1024)) == 64
    assert postgres.maintenance_mb(2, LIMIT, str(tmp_path / "absent")) == 64


def test_server_settings_skip_what_a_thrown_away_cluster_does_not_need():
    conf = postgres.CONF.format(sock="/s")
    for line in ("fsync = off", "full_page_writes = off", "wal_level = minimal", "max_wal_senders = 0",
                 "autovacuum = off", "listen_addresses = ''"):
        assert line in conf.splitlines(), line


@pytest.mark.parametrize("version,ok", [
    (b"postgres (PostgreSQL) 13.22\n", False), (b"postgres (PostgreSQL) 12.20 (Debian)\n", False),
    (b"garbage\n", False), (b"postgres (PostgreSQL) 14.0\n", True), (b"postgres (PostgreSQL) 17.6\n", True),
    (b"postgres (PostgreSQL) 18beta1\n", True),
])
def test_a_server_older_than_14_is_refused_for_drills_as_a_missing_dependency(tmp_path, monkeypatch, version, ok):
    """PROBE reads through pg_read_all_data (14+): a 13 server would fail the drill's set-up obscurely."""
    seen = []
    monkeypatch.setattr(execute, "run", lambda argv, **kw: seen.append(argv) or execute.Completed(argv, 0, stdout=version))
    if ok:
        postgres.require_server(tmp_path)
    else:
        with pytest.raises(DependencyError) as refusal:
            postgres.require_server(tmp_path)
        assert refusal.value.exit_code == 3
        assert "needs PostgreSQL 14 or later" in str(refusal.value) and str(tmp_path) in str(refusal.value)
        if version.startswith(b"postgres"):
            assert str(refusal.value).count("PostgreSQL 1") == 2, "names the version found"
    assert seen == [[str(tmp_path / "postgres"), "--version"]]
