"""A restored dump is the attacker's, on real restic, SeaweedFS and PostgreSQL: the postgres probe and the
recovery count with pg_catalog.count(*) on the catalog's tables, whatever `count` or search_path the dump
planted; the dump loads as a role that cannot run programs or change the server; a view standing where a
table was is named, not counted."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from backupd.drill.sandbox import Sandbox
from backupd.drill.spec import PostgresProbe
from backupd.probes import ProbeContext, run as run_probe
from backupd.sources import postgres as pg_source

pytestmark = pytest.mark.integration

#: A source database a dormant attacker prepared: `evil.count(*)` answers 100000, and a CHECK constraint
#: runs evil.plant for each row COPY loads, which (in any database but this one: the drill's, the
#: recovery's) puts schema evil first on the database's search_path, for every later session.
HOSTILE_DB = """
CREATE TABLE public.containers (id int PRIMARY KEY, number text);
INSERT INTO public.containers VALUES (1, 'MSCU1234565');
CREATE SCHEMA evil;
CREATE FUNCTION evil.step(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE AGGREGATE evil.count(*) (SFUNC = evil.step, STYPE = bigint, INITCOND = '100000');
CREATE FUNCTION evil.plant(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF pg_catalog.current_database() OPERATOR(pg_catalog.<>) 'tos_planted' THEN
    EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = evil, public, pg_catalog',
                              pg_catalog.current_database());
  END IF;
  RETURN true;
END $$;
CREATE TABLE evil.plant_log (id int CHECK (evil.plant(id)));
INSERT INTO evil.plant_log VALUES (1);
"""

SPEC = """version: 1
name: hostile
kind: full
probes:
  - kind: postgres
    checks:
      - name: a terminal holds containers
        sql: SELECT count(*) FROM public.containers
        min: 1000
"""

TARGET = """  - name: hostile-db
    category: container_data
    owner: test
    sources:
      dump: {kind: pg_dump, database: tos_planted, host: '${TOS_PGHOST}', port: '${TOS_PGPORT}', user: postgres}
    frequency: 1h
    rto: 4h
    retention: {keep_hourly: 24, keep_daily: 7, keep_weekly: 8}
    destinations: [worm]
    drill: hostile
"""


def test_a_planted_count_and_search_path_do_not_steer_the_probe_nor_the_recovery(policy, stack, tmp_path):
    pg = stack.postgres
    pg.psql('DROP DATABASE IF EXISTS "tos_planted"')
    pg.psql('CREATE DATABASE "tos_planted"')
    pg.psql(HOSTILE_DB, db="tos_planted")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hostile.yaml").write_text(SPEC)
    setup = policy(TARGET, "t-pg-hostile", restore_tests=f"'{specs}'")
    backup = setup.cli("backup", "--target", "hostile-db", "--json")
    assert backup.code == 0, backup.stdout + backup.stderr
    rows = backup.doc["results"][0]["facts"]["rows"]
    assert rows == {"evil.plant_log": 1, "public.containers": 1}

    pg.psql('DROP DATABASE IF EXISTS "tos_planted_back"')
    pg.psql('CREATE DATABASE "tos_planted_back"')
    restored = setup.cli("restore", "--target", "hostile-db", "--into-database", "tos_planted_back", "--db-host",
                         pg.host, "--db-port", str(pg.port), "--db-user", "postgres", "--allow-superuser", "--json")
    assert restored.doc["rows"] == rows, restored.stdout + restored.stderr
    planted = pg.psql("SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                      "WHERE d.datname = 'tos_planted_back'")
    assert planted == [(1,)], "the setting was planted, and the recovery's count was not steered by it"

    drill = setup.cli("drill", "--target", "hostile-db", "--full", "--json")
    assert drill.code == 1, drill.stdout + drill.stderr
    (d,) = drill.doc["drills"]
    (probe,) = d["probes"]
    assert d["verdict"] == "FAIL" and d["verification"]["ok"]
    assert probe["details"]["rows"] == rows, "the true counts, not evil.count's 100000"
    assert probe["problems"] == [
        "the dump left a setting on the database: search_path=evil, public, pg_catalog (a pg_dump writes none; "
        "recovery would keep it for every later session)",
        "a terminal holds containers: 1 is below 1000"], "named, and the check saw the true count"


TABLE = b"""CREATE TABLE public.containers (id int);
COPY public.containers (id) FROM stdin;
1
2
3
\\.
"""


def _probe(make_dump, look=lambda sandbox: None, **spec):
    """Run the postgres probe in a real sandbox on make_dump(sandbox path), its facts counted from it as a
    backup does; look(sandbox path) runs before the sandbox is removed. -> (result, what look returned)."""
    with Sandbox(Path(tempfile.gettempdir()) / "backupd-test-sandbox", 1 << 30) as box:
        os.chmod(box.parent, 0o711)
        dump = make_dump(box.path)
        facts = pg_source.DumpFacts()
        facts(dump)
        (box.restore_dir / "tos.sql").write_bytes(dump)
        entry = {"path": "/tos.sql", "type": "stdin", "size": 0, "sha256": "", "mode": ""}
        ctx = ProbeContext(target=None, sandbox=box.path, restore_dir=box.restore_dir,
                           manifest={"facts": facts.facts(), "files": [entry]}, restored=[entry],
                           snapshot_time=datetime.now(timezone.utc), rpo=None, previous=lambda: None,
                           grant=lambda *paths: box.grant("postgres", *paths))
        result = run_probe(PostgresProbe(kind="postgres", **spec), ctx)
        return result, look(box.path)


@pytest.mark.parametrize("statement, error", [
    ("COPY (SELECT 1) TO PROGRAM 'touch {marker}'", "COPY to or from an external program"),
    ("ALTER SYSTEM SET archive_command = 'touch {marker}'", 'permission denied to set parameter "archive_command"'),
    ("CREATE FUNCTION public.f() RETURNS int AS 'libc.so.6', 'getpid' LANGUAGE c", "language c"),
], ids=["copy-program", "alter-system", "untrusted-language"])
def test_a_dump_that_would_act_as_superuser_fails_the_drill_and_nothing_ran(statement, error):
    def dump(sandbox: Path) -> bytes:  # the marker lies in the cluster's directory, which its server may write
        return TABLE + statement.format(marker=sandbox / "pg" / "pwned").encode() + b";\n"

    def look(sandbox: Path):
        auto = sandbox / "pg" / "data" / "postgresql.auto.conf"
        return (sandbox / "pg" / "pwned").exists(), auto.read_text() if auto.exists() else ""

    result, (ran, auto) = _probe(dump, look)
    assert result.status == "failed", result.problems
    assert any(error in p and "failed to load the dump" in p for p in result.problems), result.problems
    assert not ran and "touch" not in auto, "the dump ran nothing and changed no server setting"
    assert "rows" not in result.details, "nothing was counted after the failed load"


def test_a_view_standing_where_a_table_was_is_named_and_a_policy_hides_no_rows():
    planted = TABLE + b"""ALTER TABLE public.containers RENAME TO containers_gone;
CREATE VIEW public.containers AS SELECT g AS id FROM pg_catalog.generate_series(1, 3) g;
CREATE TABLE public.vessels (id int);
COPY public.vessels (id) FROM stdin;
1
2
\\.
ALTER TABLE public.vessels ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.vessels FORCE ROW LEVEL SECURITY;
CREATE POLICY hide ON public.vessels USING (false);
"""
    result, _ = _probe(lambda sandbox: planted, tables={"containers": {"min_rows": 1}},
                       checks=[{"name": "unqualified", "sql": "SELECT count(*) FROM vessels", "min": 1}])
    assert result.status == "failed"
    assert result.details["rows"] == {"public.vessels": 2}, "the policy hid no row from the count"
    assert result.problems == [
        "public.containers: a view stands where the backup had a table; its rows are not counted "
        "(3 row(s) at backup time)",
        'unqualified: relation "vessels" does not exist (checks run with search_path = pg_catalog: name '
        "tables with their schema, e.g. public.containers)"]
