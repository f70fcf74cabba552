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


def _bare_cluster() -> postgres.Cluster:
    cluster = postgres.Cluster.__new__(postgres.Cluster)  # no server programs needed: psql is recorded
    cluster.jail, cluster.baseline, cluster.tuned, cluster.tuned_mb = postgres.Jail(), set(), 0, 0
    return cluster


def test_an_early_cluster_is_tuned_for_the_probes_loaders_in_its_one_set_up_psql(monkeypatch):
    cluster, calls = _bare_cluster(), []
    monkeypatch.setattr(postgres, "maintenance_mb", lambda jobs, limit: 512 // jobs)
    monkeypatch.setattr(cluster, "psql", lambda *args, **kw: calls.append(args) or "")
    cluster._roles(2)
    (setup,) = calls  # one psql while restic restores: roles, database, its maintenance_work_mem
    assert "ALTER DATABASE \"drill\" SET maintenance_work_mem = '256MB'" in setup
    cluster.tune(2)  # the archive's two loaders: nothing left to do after the restore
    assert len(calls) == 1
    cluster.tune(1)  # a plain dump after all: one loader, tuned again, ours in the baseline
    assert len(calls) == 2 and (False, "maintenance_work_mem=512MB") in cluster.baseline
    assert (False, "maintenance_work_mem=256MB") not in cluster.baseline


def test_initdb_of_an_early_cluster_runs_niced_and_nothing_else_does():
    import os

    assert postgres._niced(lambda: os.getpriority(os.PRIO_PROCESS, 0), postgres.INITDB_NICE) \
        >= min(os.getpriority(os.PRIO_PROCESS, 0) + postgres.INITDB_NICE, 19)
    assert postgres._niced(lambda: os.getpriority(os.PRIO_PROCESS, 0), 0) == os.getpriority(os.PRIO_PROCESS, 0)
    with pytest.raises(ValueError):
        postgres._niced(lambda: int("x"), postgres.INITDB_NICE)  # its failure is the caller's
