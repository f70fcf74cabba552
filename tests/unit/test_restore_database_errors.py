"""restore --into-database meets a failing server without a traceback: a query that fails is a finding
(exit 1), a server gone is a dependency (exit 3), a dump that cannot be read fails the load; the
password never reaches a message. And every session starts confined (search_path = pg_catalog)."""

from __future__ import annotations

import psycopg
import pytest

from backupd.actions import restore_database as rd
from backupd.errors import DependencyError, Finding
from backupd.process import execute
from backupd.sources import pgcount

SECRET = "Hunter2Secret"


class Conn:
    """A psycopg connection whose every query raises `error`."""

    def __init__(self, error):
        self.error, self.sql = error, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, *args):
        self.sql.append(sql)
        raise self.error


def _db(monkeypatch, error) -> rd.Database:
    db = rd.Database(dbname="tos", password=SECRET)
    monkeypatch.setattr(rd.Database, "connect", lambda self: Conn(error))
    return db


@pytest.mark.parametrize("call", ["preflight", "settings", "count"])
@pytest.mark.parametrize("error,kind,code", [
    (psycopg.errors.InsufficientPrivilege(f"permission denied for {SECRET}\x1b[31m"), Finding, 1),
    (psycopg.OperationalError(f"server closed the connection unexpectedly {SECRET}"), DependencyError, 3),
    (psycopg.errors.AdminShutdown(f"terminating connection due to administrator command {SECRET}"), DependencyError, 3),
])
def test_a_failing_query_is_a_finding_and_a_lost_server_a_dependency_never_a_traceback(monkeypatch, call, error,
                                                                                       kind, code):
    db = _db(monkeypatch, error)
    run = {"preflight": lambda: rd._preflight(db, False, False), "settings": lambda: rd._settings(db),
           "count": lambda: rd._count(db, ["public.t"])}[call]
    with pytest.raises(kind) as raised:
        run()
    assert raised.value.exit_code == code
    text = str(raised.value)
    assert "database tos" in text and SECRET not in text and "[REDACTED]" in text and "\x1b" not in text


def test_a_dump_that_cannot_be_read_while_it_loads_fails_the_load_naming_why(monkeypatch, tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text("SELECT 1;\n")

    def run(argv, env=None, **kw):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(execute, "run", run)
    monkeypatch.setattr(rd, "bindir", lambda: tmp_path)
    monkeypatch.setattr(rd.pgload, "require_restrict", lambda bindir: None)
    why = rd._load(rd.Database(dbname="tos"), dump, 1, None)
    assert why.startswith("reading the restored dump to load it into tos failed: Input/output error")


def test_every_session_starts_with_search_path_pg_catalog_and_names_the_catalog_qualified(monkeypatch):
    seen = {}

    def connect(**kwargs):
        seen.update(kwargs)
        raise psycopg.OperationalError("no server")
    monkeypatch.setattr(psycopg, "connect", connect)
    with pytest.raises(DependencyError):
        rd.Database(dbname="tos").connect()
    assert "-c search_path=pg_catalog" in seen["options"] and seen["options"] == pgcount.options()
    for sql in (rd.POWERS_SQL, rd.USER_RELATIONS_SQL, pgcount.settings_sql(), pgcount.settings_sql("x'\\y")):
        for name in ("unnest", "pg_roles", "pg_database", "pg_has_role", "bool_or", "count", "pg_class",
                     "pg_db_role_setting", "current_database"):
            assert f" {name}" not in sql and f"({name}" not in sql, (name, sql)
        assert " = " not in sql and " <> " not in sql and " IN (" not in sql and " LIKE " not in sql
    assert "E'x''\\\\y'" in pgcount.settings_sql("x'\\y")


def test_the_settings_lines_become_scoped_settings_and_anything_else_is_skipped(monkeypatch):
    lines = ['["tos", null, "search_path=evil, public"]', '[null, "tos_app", "work_mem=1GB"]',
             '["tos", "tos_app", "statement_timeout=0"]', '["tos", null, 5]', "not json", '[1, 2]']

    class Rows(Conn):
        def execute(self, sql, *args):
            self.sql.append(sql)
            return self

        def fetchall(self):
            return [(line,) for line in lines]
    monkeypatch.setattr(rd.Database, "connect", lambda self: Rows(None))
    assert rd._settings(rd.Database(dbname="tos")) == {
        ("database tos", "search_path=evil, public"), ("role tos_app", "work_mem=1GB"),
        ("role tos_app in database tos", "statement_timeout=0")}
