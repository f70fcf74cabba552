"""Custom-format database dumps: the policy option, the pg_dump and load argv, and load failures that
name the object."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from backupd.actions.restore_database import Database
from backupd.errors import ConfigError
from backupd.policy.schema import DumpSource
from backupd.sources import pgload, postgres


def test_custom_format_is_an_uncompressed_archive_of_the_exported_snapshot():
    argv = postgres.dump_argv("tos", "/run/pg", 5432, "backup", fmt="custom", snapshot="00000003-1")
    assert argv[:3] == ["pg_dump", "--format=custom", "--compress=0"]
    assert argv[argv.index("--snapshot") + 1] == "00000003-1" and argv[-2:] == ["--dbname", "tos"]
    assert postgres.dump_argv("tos")[1] == "--format=plain"


def test_policy_format_option_and_default_file_names():
    assert DumpSource(kind="pg_dump", database="tos").filename == "tos.sql"
    custom = DumpSource(kind="pg_dump", database="tos", format="custom")
    assert custom.format == "custom" and custom.filename == "tos.dump"
    with pytest.raises(ValidationError, match="only allowed with kind pg_dump"):
        DumpSource(kind="command", command=["x"], format="custom")
    with pytest.raises(ValidationError):
        DumpSource(kind="pg_dump", database="tos", format="tar")


def test_load_argv_uses_pg_restore_jobs_for_an_archive_and_psql_for_sql(tmp_path):
    archive, sql = tmp_path / "a.dump", tmp_path / "a.sql"
    archive.write_bytes(postgres.CUSTOM_MAGIC + b"\x01\x0e")
    sql.write_text("SELECT 1;\n")
    argv = pgload.load_argv(tmp_path, archive, database="drill", host="/s", port=5432, user="postgres", jobs=3)
    assert argv[0].endswith("pg_restore") and "--jobs=3" in argv and argv[-1] == str(archive)
    argv = pgload.load_argv(tmp_path, sql, database="drill", jobs=3)
    assert argv[0].endswith("psql") and "ON_ERROR_STOP=1" in argv and "--jobs=3" not in argv


def test_load_failures_name_the_statement_and_object():
    stderr = ('pg_restore: error: could not execute query: ERROR:  role "ghost" does not exist\n'
              'Command was: ALTER TABLE public.u OWNER TO ghost;\n\n'
              'pg_restore: error: could not execute query: ERROR:  extension "postgis" is not available\n'
              'Command was: CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;\n'
              'pg_restore: warning: errors ignored on restore: 2\n')
    assert pgload.failures(stderr) == [
        'role "ghost" does not exist (at: ALTER TABLE public.u OWNER TO ghost;)',
        'extension "postgis" is not available (at: CREATE EXTENSION IF NOT EXISTS postgis WITH SCHEMA public;)']
    assert pgload.failures("pg_restore: error: could not read from input file: end of file\n") == [
        "pg_restore: error: could not read from input file: end of file"]


def test_into_database_takes_a_name_with_options_or_a_dsn_and_keeps_the_password_out_of_argv(tmp_path):
    db = Database.parse("tos_new", "/run/postgresql", 5433, "tos")
    assert (db.dbname, db.host, db.port, db.user, db.password) == ("tos_new", "/run/postgresql", 5433, "tos", None)
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    db = Database.parse("postgresql://tos@db1:6432/tos_new", password_file=secret)
    assert (db.dbname, db.host, db.port, db.user) == ("tos_new", "db1", 6432, "tos")
    assert db.environment().secret == {"PGPASSWORD": "s3cret"}
    with pytest.raises(ConfigError, match="names no database"):
        Database.parse("host=db1 user=tos")


def test_rows_that_cannot_be_counted_are_recorded_as_such_not_a_lost_snapshot():
    from backupd.actions.backup import _counted

    class Pin:
        def rows(self):
            raise postgres.Finding("counting rows at the dump's snapshot failed: canceling statement")

    assert _counted(Pin()).startswith("counting rows at the dump's snapshot failed")
