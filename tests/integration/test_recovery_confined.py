"""Real recovery (`restore --into-database`) of a dump the attacker wrote, on real restic, SeaweedFS and
PostgreSQL: psql's meta-commands in the dump never run on the host (the load fails naming the line, and a
drill of that dump FAILs the same way), a role able to run programs on the server is refused, a setting
the dump leaves on the database is a problem, a real pg_dump still loads as the database's owner, and a
DSN carrying a password is refused without echoing it."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

SPEC = """version: 1
name: pgh
kind: full
probes:
  - kind: postgres
"""

TARGETS = """  - name: hostile
    category: container_data
    owner: test
    sources:
      dump: {{kind: command, command: [cat, '{dump}'], filename: evil.sql}}
    frequency: 1h
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
    drill: pgh
  - name: db
    category: container_data
    owner: test
    sources:
      dump: {{kind: pg_dump, database: tos_owned_src, host: '${{TOS_PGHOST}}', port: '${{TOS_PGPORT}}',
             user: postgres}}
    frequency: 1h
    rto: 4h
    retention: {{keep_hourly: 24, keep_daily: 7, keep_weekly: 8}}
    destinations: [worm]
"""

OWNER = "tos_app"  # the database's owner: no superuser, no CREATEROLE, no pg_*_server_* membership


def _setup(policy, stack, tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "pgh.yaml").write_text(SPEC)
    stack.postgres.psql(f"DO $$ BEGIN CREATE ROLE {OWNER} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    return policy(TARGETS.format(dump=tmp_path / "evil.sql"), "t-recovery-confined", restore_tests=f"'{specs}'")


def _fresh(stack, name: str) -> None:
    stack.postgres.psql(f'DROP DATABASE IF EXISTS "{name}"')
    stack.postgres.psql(f'CREATE DATABASE "{name}" OWNER {OWNER}')


def _into(setup, target: str, database: str, *extra: str, user: str = OWNER):
    pg = setup.stack.postgres
    return setup.cli("restore", "--target", target, "--into-database", database, "--db-host", pg.host,
                     "--db-port", str(pg.port), "--db-user", user, *extra, "--json")


def _backup(setup, dump_text: str) -> str:
    (setup.dir.parent / "evil.sql").write_text(dump_text)
    done = setup.cli("backup", "--target", "hostile", "--json")
    assert done.code == 0, done.stdout + done.stderr
    return done.doc["results"][0]["snapshot_id"]


@pytest.mark.parametrize("line,command", [
    ("\\! touch {marker}", "\\!"),
    ("\\o |touch {marker}", "\\o"),
    ("SELECT 1 \\! touch {marker}", "\\!"),
])
def test_a_dump_carrying_psql_meta_commands_runs_none_of_them_on_the_host(policy, stack, tmp_path, line, command):
    setup = _setup(policy, stack, tmp_path)
    marker = tmp_path / "ran-on-the-host"
    snap = _backup(setup, "SET client_min_messages = warning;\nCREATE TABLE t (id int);\n"
                          + line.format(marker=marker) + "\nSELECT 2;\n")
    _fresh(stack, "tos_hostile")
    done = _into(setup, "hostile", "tos_hostile", "--snapshot", snap)
    assert not marker.exists(), "the dump's command ran on the host"
    assert done.code == 1, done.stdout + done.stderr
    assert f"meta-command at line 3 ({command})" in done.doc["error"] and "refused" in done.doc["error"]
    if command == "\\o":  # once is enough for the drill: the same load, confined
        drill = setup.cli("drill", "--target", "hostile", "--full", "--json")
        assert drill.code == 1, drill.stdout + drill.stderr
        (d,) = drill.doc["drills"]
        assert d["verdict"] == "FAIL" and "meta-command at line 3 (\\o)" in " ".join(d["probes"][0]["problems"])


def test_a_setting_the_dump_leaves_on_the_database_is_a_problem(policy, stack, tmp_path):
    setup = _setup(policy, stack, tmp_path)
    snap = _backup(setup, "CREATE SCHEMA evil;\nALTER DATABASE tos_hostile SET search_path = evil, public;\n")
    _fresh(stack, "tos_hostile")
    done = _into(setup, "hostile", "tos_hostile", "--snapshot", snap)
    assert done.code == 1, done.stdout + done.stderr
    assert any("database tos_hostile: search_path=evil, public" in p for p in done.doc["problems"]), done.doc


#: Catalog look-alikes in public, put first on the database's search_path: each would hide the setting (or
#: a superuser) from a query naming the catalog without pg_catalog., in a session taking that search_path.
PLANTED = """CREATE FUNCTION public.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS 'SELECT NULL::text WHERE false';
CREATE VIEW public.pg_roles AS SELECT oid, rolname, false AS rolsuper, false AS rolcreaterole FROM pg_catalog.pg_roles;
CREATE VIEW public.pg_database AS SELECT 0::pg_catalog.oid AS oid, 'elsewhere'::pg_catalog.name AS datname;
CREATE FUNCTION public.pg_has_role(name, oid, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
CREATE FUNCTION public.pg_has_role(name, text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
DO $$ BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, pg_catalog',
                                      pg_catalog.current_database()); END $$;
"""


def test_a_planted_unnest_or_catalog_view_hides_neither_the_setting_nor_a_superuser(policy, stack, tmp_path):
    setup = _setup(policy, stack, tmp_path)
    snap = _backup(setup, PLANTED)
    _fresh(stack, "tos_hostile")
    done = _into(setup, "hostile", "tos_hostile", "--snapshot", snap)
    assert done.code == 1, done.stdout + done.stderr
    assert done.doc["problems"] == [
        "the load left a setting on database tos_hostile: search_path=public, pg_catalog (it outlives the load "
        "and steers every later session; remove it, e.g. ALTER DATABASE ... RESET name)"], done.doc
    # with --force the database is the dump's before the load too: its look-alikes hide no superuser
    forced = _into(setup, "hostile", "tos_hostile", "--snapshot", snap, "--force", user="postgres")
    assert forced.code == 2 and "superuser" in forced.doc["error"], forced.stdout + forced.stderr
    drill = setup.cli("drill", "--target", "hostile", "--full", "--json")
    assert drill.code == 1, drill.stdout + drill.stderr
    (d,) = drill.doc["drills"]
    assert "the dump left a setting on the database: search_path=public, pg_catalog" in " ".join(
        d["probes"][0]["problems"]), d


def test_a_real_pg_dump_loads_as_the_owner_and_a_superuser_is_refused(policy, stack, tmp_path):
    setup = _setup(policy, stack, tmp_path)
    pg = stack.postgres
    _fresh(stack, "tos_owned_src")
    with pg.connect("tos_owned_src", autocommit=True) as conn:
        conn.execute(f"SET ROLE {OWNER}")
        conn.execute("CREATE TABLE berths (id int PRIMARY KEY, note text)")
        conn.execute("INSERT INTO berths SELECT g, E'line\\\\restrict ' || g FROM generate_series(1, 250) g")
    assert setup.cli("backup", "--target", "db").code == 0
    _fresh(stack, "tos_owned_dst")
    refused = _into(setup, "db", "tos_owned_dst", user="postgres")
    assert refused.code == 2, refused.stdout + refused.stderr
    assert "superuser" in refused.doc["error"] and "--db-user" in refused.doc["error"]
    # a role that may SET ROLE to a superuser is one (the dump can say SET ROLE postgres)
    pg.psql("DO $$ BEGIN CREATE ROLE tos_sneaky LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    pg.psql("GRANT postgres TO tos_sneaky")
    sneaky = _into(setup, "db", "tos_owned_dst", user="tos_sneaky")
    assert sneaky.code == 2 and "member of one" in sneaky.doc["error"], sneaky.stdout + sneaky.stderr
    assert pg.psql("SELECT count(*) FROM pg_class WHERE relname = 'berths'", db="tos_owned_dst") == [(0,)]
    done = _into(setup, "db", "tos_owned_dst")
    assert done.code == 0, done.stdout + done.stderr
    assert done.doc["format"] == "plain" and done.doc["rows"] == {"public.berths": 250}
    assert pg.psql("SELECT count(*) FROM berths WHERE note LIKE 'line\\\\restrict %'", db="tos_owned_dst") == [(250,)]


def test_a_dsn_carrying_a_password_is_refused_and_never_echoed(policy, stack, tmp_path):
    setup = _setup(policy, stack, tmp_path)
    pg = stack.postgres
    for dsn in (f"postgresql://{OWNER}:Hunter2Secret@localhost:{pg.port}/tos_hostile",
                f"host={pg.host} port={pg.port} user={OWNER} dbname=tos_hostile password=Hunter2Secret"):
        done = setup.cli("restore", "--target", "hostile", "--into-database", dsn, "--json")
        assert done.code == 2, done.stdout + done.stderr
        assert "carries a password" in done.doc["error"]
        assert "Hunter2Secret" not in done.stdout + done.stderr
