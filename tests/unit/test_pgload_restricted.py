"""A plain dump is loaded by psql in restricted mode: the filter that blanks only the dump's own
\\restrict/\\unrestrict lines outside COPY data, the refusal named by line and command, the psql
version gate, and the recovery's connection (no password in a DSN, a 0600 password file)."""

from __future__ import annotations

import pytest

from backupd.actions.restore_database import Database
from backupd.errors import ConfigError, DependencyError
from backupd.process import execute
from backupd.sources import pgload

KEY = "XqqF7zRLx86iBDg4AGJnHIlitcqlC9vqpdlSnE2X7uytCojyQQo8vDptAUogmjU"


def _filtered(tmp_path, text: bytes, chunk: int = 1 << 16) -> bytes:
    dump = tmp_path / "d.sql"
    dump.write_bytes(text)
    return b"".join(pgload.restricted_input(dump, chunk=chunk))


def test_pg_dumps_own_restrict_lines_are_blanked_keeping_line_numbers(tmp_path):
    text = (f"--\n\\restrict {KEY}\nSET x = 1;\nCOPY \"public\".\"t\" (\"v\") FROM stdin;\n1\n\\.\n"
            f"\\unrestrict {KEY}\n").encode()
    out = _filtered(tmp_path, text, chunk=7)
    assert out == b"--\n\nSET x = 1;\nCOPY \"public\".\"t\" (\"v\") FROM stdin;\n1\n\\.\n\n"
    assert out.count(b"\n") == text.count(b"\n")


@pytest.mark.parametrize("line", [
    b"\\! touch /tmp/x", b"\\o |touch /tmp/x", b"SELECT 1 \\! touch /tmp/x",
    b"\\copy t to program 'touch /tmp/x'", b"\\restrict", b"\\restrict a b", b"\\unrestrict k;",
    b" \\restrict k", b"\\restrict k \\! id", b"\\set x 1",
])
def test_every_other_meta_command_reaches_psql_unchanged_so_psql_refuses_it(tmp_path, line):
    text = b"SELECT 1;\n" + line + b"\nSELECT 2;\n"
    assert _filtered(tmp_path, text) == text


@pytest.mark.parametrize("row", [b"\\restrict x", b"\\unrestrict abc", b"\\restrict " + KEY.encode()])
def test_a_copy_row_that_reads_like_restrict_is_data_and_stays(tmp_path, row):
    text = b"COPY \"t\" (\"v\") FROM stdin;\n" + row + b"\n\\.\n\\restrict k\n"
    assert _filtered(tmp_path, text) == b"COPY \"t\" (\"v\") FROM stdin;\n" + row + b"\n\\.\n\n"


def test_a_line_longer_than_the_window_or_without_newline_passes_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(pgload, "LINE_MAX", 16)
    long = b"SELECT '" + b"x" * 40 + b"';\n"
    text = long + b"\\restrict abc"  # no final newline: not a whole line, left to psql (which refuses it)
    assert _filtered(tmp_path, text) == text


def test_psqls_refusal_names_the_line_and_the_command(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_bytes(b"SELECT 1;\n\n\nSELECT 2; \\o |\x1b[31mcurl evil\n")
    stderr = "psql:<stdin>:4: error: backslash commands are restricted; only \\unrestrict is allowed\n"
    assert pgload.load_failure(stderr, dump) == (
        "the dump carries a psql meta-command at line 4 (\\o): refused, not run; the load stopped there")
    assert pgload.refused("psql:<stdin>:3: ERROR:  syntax error\n", dump) is None


@pytest.mark.parametrize("version,ok", [
    (b"psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", True), (b"psql (PostgreSQL) 15.13\n", False),
    (b"psql (PostgreSQL) 16.10\n", True), (b"psql (PostgreSQL) 17.5\n", False), (b"psql (PostgreSQL) 18.1\n", True),
    (b"psql (PostgreSQL) 12.22\n", False), (b"", False),
    # 13.22 has \restrict, but backupd needs 14 (the drill's pg_read_all_data): one gate for both
    (b"psql (PostgreSQL) 13.22\n", False), (b"psql (PostgreSQL) 14.18\n", False), (b"psql (PostgreSQL) 14.19\n", True),
])
def test_a_psql_without_restrict_is_refused_as_a_missing_dependency(tmp_path, monkeypatch, version, ok):
    monkeypatch.setattr(execute, "run", lambda argv, **kw: execute.Completed(argv, 0, stdout=version))
    if ok:
        pgload.require_restrict(tmp_path)
    else:
        with pytest.raises(DependencyError, match="lacks \\\\restrict") as refusal:
            pgload.require_restrict(tmp_path)
        assert "14.19, 15.14, 16.10, 17.6 or later" in str(refusal.value)


def test_the_plain_load_argv_restricts_psql_with_a_fresh_key_and_reads_stdin(tmp_path):
    dump = tmp_path / "d.sql"
    dump.write_text("SELECT 1;\n")
    one = pgload.load_argv(tmp_path, dump, database="db")
    two = pgload.load_argv(tmp_path, dump, database="db")
    assert one[-2:] == ["-f", "-"] and one[-4] == "-c" and one[-3].startswith("\\restrict ")
    assert one[-3] != two[-3] and str(dump) not in one
    assert pgload.load_input(dump) is not None


@pytest.mark.parametrize("dsn", ["postgresql://tos:hunter22@db1/tos", "postgresql://tos@db1/tos?password=hunter22",
                                 "dbname=tos host=db1 password=hunter22"])
def test_a_dsn_carrying_a_password_is_refused_without_echoing_it(dsn):
    with pytest.raises(ConfigError, match="carries a password") as caught:
        Database.parse(dsn)
    assert "hunter22" not in str(caught.value)


def test_the_password_file_must_be_private(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("hunter22\n")
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        Database.parse("tos", password_file=secret)
    assert "hunter22" not in str(caught.value)
    with pytest.raises(ConfigError, match="cannot read"):
        Database.parse("tos", password_file=tmp_path / "missing")


VOCABULARY = [b"SELECT 1;", b"COPY \"t\" (\"v\") FROM stdin;", b"copy t from stdin;", b"\\.", b"\\.\r",
              b"\\restrict k1", b"\\unrestrict k1", b"\\restrict", b"\\! id", b"\\o |id", b"1\t\\restrict x",
              b"SELECT 1 \\! id", b"", b"'", b"$$", b"\\restrict " + b"a" * 64, b"-- \\restrict k"]


@pytest.mark.parametrize("seed", range(200))
def test_the_filter_only_ever_blanks_whole_restrict_lines(tmp_path, seed):
    """Whatever the dump: as many lines out as in, each unchanged or blanked, and only a line that is
    exactly `\\restrict KEY` or `\\unrestrict KEY` ever blanked (so nothing is added or let through)."""
    import random

    rng = random.Random(seed)
    lines = [rng.choice(VOCABULARY) for _ in range(rng.randint(1, 40))]
    text = b"\n".join(lines) + (b"\n" if rng.random() < 0.8 else b"")
    out = _filtered(tmp_path, text, chunk=rng.randint(1, 64))
    assert out.count(b"\n") == text.count(b"\n")
    for before, after in zip(text.split(b"\n"), out.split(b"\n")):
        assert after == before or (after == b"" and pgload._RESTRICT_LINE.match(before.rstrip(b"\r")))
