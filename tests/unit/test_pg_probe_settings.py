"""The drill's throw-away PostgreSQL server is set up for restore speed: index builds get memory sized to
the machine and the number of concurrent loaders, within what a sandboxed process may map."""

from __future__ import annotations

from backupd.probes import postgres
from backupd.sandbox import Limits


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
