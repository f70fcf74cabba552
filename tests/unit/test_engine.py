"""Engine wrapper: argv building, exit-code classification, secrets kept out of argv."""

from datetime import timedelta
from pathlib import Path

import pytest

from backupd.engine import backup, exitcodes, feature, forget
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from backupd.process.execute import Completed

SECRET = "s3cr3t-KEY-never-in-argv"
REPO = Repository("dest", "s3:http://127.0.0.1:9/bucket/restic", Path("/etc/backupd/secrets/pw"),
                  {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": SECRET})


def done(code, stderr="", **kw):
    return Completed(["restic"], code, b"", stderr, **kw)


@pytest.mark.parametrize("code,stderr,error", [
    (1, "Fatal: unable to open config file: Stat: The specified key does not exist.\n"
        "Is there a repository at the following location?", exitcodes.RepositoryMissing),
    (10, "", exitcodes.RepositoryMissing),
    (11, "", exitcodes.RepositoryLocked),
    (1, "Fatal: unable to create lock in backend: repository is already locked by PID 7", exitcodes.RepositoryLocked),
    (12, "", exitcodes.WrongPassword),
    (1, "Fatal: wrong password or no key found", exitcodes.WrongPassword),
    (130, "", exitcodes.Cancelled),
    (1, "Fatal: dial tcp 127.0.0.1:9: connect: connection refused", exitcodes.StorageUnavailable),
    (1, "Fatal: unable to open config file: Stat: Get \"http://127.0.0.1:1/b/?location=\": dial tcp "
        "127.0.0.1:1: connect: connection refused\nIs there a repository at the following location?",
     exitcodes.StorageUnavailable),
    (3, "", exitcodes.SourceUnreadable),
    (1, "Fatal: something else", exitcodes.ResticError),
    (42, "", exitcodes.ResticError),
    (-9, "", exitcodes.ResticError),
])
def test_classify_maps_exit_codes(code, stderr, error):
    with pytest.raises(error):
        exitcodes.classify(done(code, stderr), "op")


def test_classify_accepts_success_only_when_not_timed_out():
    exitcodes.classify(done(0), "op")
    with pytest.raises(exitcodes.TimedOut, match="timed out") as info:
        exitcodes.classify(done(0, timed_out=True, limit=30.0), "op")
    assert info.value.exit_code == 3 and "within 30 s" in str(info.value)


def test_exit_codes_map_to_the_cli_contract():
    assert exitcodes.StorageUnavailable.exit_code == 3
    assert exitcodes.WrongPassword.exit_code == 2
    assert exitcodes.SourceUnreadable.exit_code == 1


def test_backup_argv_has_tags_excludes_and_no_secret():
    argv = backup.paths_argv(REPO, ["/srv/tos"], excludes=["*.tmp"], tags={"target": "db", "host": "h"}, host="h")
    assert argv[:3] == ["restic", "backup", "--json"]
    assert argv[argv.index("--exclude") + 1] == "*.tmp"
    assert "target=db" in argv and argv[-2:] == ["--", "/srv/tos"]
    assert not any(SECRET in a or "pw" == a for a in argv)


def test_stdin_argv_names_the_file():
    argv = backup.stdin_argv(REPO, "tos.sql", tags=["backupd"], host="h")
    assert argv[argv.index("--stdin-filename") + 1] == "tos.sql"


def test_backup_time_override_dates_both_kinds_of_backup(monkeypatch):
    monkeypatch.delenv(backup.TIME_OVERRIDE, raising=False)
    assert "--time" not in backup.paths_argv(REPO, ["/srv"], excludes=[], tags=[], host="h")
    monkeypatch.setenv(backup.TIME_OVERRIDE, "2026-01-02 03:04:05")
    for argv in (backup.paths_argv(REPO, ["/srv"], excludes=[], tags=[], host="h"),
                 backup.stdin_argv(REPO, "tos.sql", tags=[], host="h")):
        assert argv[argv.index("--time") + 1] == "2026-01-02 03:04:05"
    monkeypatch.setenv(backup.TIME_OVERRIDE, "yesterday")
    with pytest.raises(ConfigError, match="BACKUPD_BACKUP_TIME"):
        backup.paths_argv(REPO, ["/srv"], excludes=[], tags=[], host="h")


def test_tags_with_commas_are_refused():
    with pytest.raises(ValueError):
        backup.tag_args({"target": "a,b"})


def test_secrets_travel_only_in_the_environment():
    env = REPO.environment()
    assert env.secret == {"AWS_SECRET_ACCESS_KEY": SECRET}
    assert env.plain["RESTIC_PASSWORD_FILE"] == "/etc/backupd/secrets/pw"
    assert "RESTIC_PASSWORD" not in env.build()
    assert env.scrub(f"error talking with key {SECRET}") == "error talking with key [REDACTED]"


def test_forget_always_carries_the_keep_within_guard():
    args = forget.forget_args({"keep_daily": 7, "keep_weekly": 0}, timedelta(weeks=6), tags=["backupd", "target=x"], host="h")
    assert args[args.index("--keep-within") + 1] == "42d"
    assert args[args.index("--keep-daily") + 1] == "7"
    assert "--keep-weekly" not in args and "--prune" not in args
    with pytest.raises(ValueError):
        forget.forget_args({}, timedelta(0), tags=[], host="h")


def test_restic_duration_rounds_up():
    assert forget.restic_duration(timedelta(hours=30, minutes=1)) == "31h"
    assert forget.restic_duration(timedelta(days=2)) == "2d"


def test_parse_backup_summary_and_errors():
    out = (b'{"message_type":"status","percent_done":0.5}\n'
           b'{"message_type":"error","error":{"Op":"open","Path":"x","Err":13},"during":"archival","item":"/srv/x"}\n'
           b'{"message_type":"summary","files_new":2,"data_added":10,"total_files_processed":2,'
           b'"total_bytes_processed":20,"total_duration":1.5,"snapshot_id":"abcd1234"}\n')
    s = backup.parse_output(out)
    assert s.snapshot_id == "abcd1234" and s.files_new == 2 and s.duration == 1.5
    assert s.errors and s.errors[0].startswith("/srv/x")


@pytest.mark.parametrize("text,version", [
    ("restic 0.14.0 compiled with go1.19.8 on linux/amd64", (0, 14, 0)),
    ("restic 0.18.1 compiled with go1.24 on linux/amd64", (0, 18, 1)),
])
def test_version_parse_and_gates(text, version):
    v = feature.parse_version(text)
    assert v == version
    assert feature.has("exit_codes_10_11_12", v) == (v >= (0, 17, 0))


@pytest.mark.parametrize("code", [0, 3])
def test_read_errors_make_the_backup_incomplete(code):
    out = (b'{"message_type":"error","error":{"message":"permission denied"},"during":"archival","item":"/srv/plc/a"}\n'
           b'{"message_type":"summary","snapshot_id":"abcd1234"}\n')
    with pytest.raises(exitcodes.SourceUnreadable) as info:
        backup._finish(Completed(["restic"], code, out, ""), "backup")
    assert info.value.items == ["/srv/plc/a: permission denied"]


def test_a_backup_without_summary_is_a_failure():
    with pytest.raises(exitcodes.ResticError, match="no snapshot"):
        backup._finish(Completed(["restic"], 0, b"", ""), "backup")


def test_exit_codes_10_to_12_are_gated_on_the_restic_version():
    with pytest.raises(exitcodes.ResticError) as info:
        exitcodes.classify(done(10), "op", version=(0, 14, 0))
    assert not isinstance(info.value, exitcodes.RepositoryMissing)
    with pytest.raises(exitcodes.RepositoryMissing):
        exitcodes.classify(done(10), "op", version=(0, 17, 0))


def test_missing_restic_is_a_dependency_error(tmp_path):
    from backupd.errors import DependencyError

    feature.detect.cache_clear()
    with pytest.raises(DependencyError, match="not found"):
        feature.detect(str(tmp_path / "no-restic"))


def _fake_restic(tmp_path, version: str, code: int) -> str:
    path = tmp_path / "restic"
    path.write_text(f"#!/bin/sh\nif [ \"$1\" = version ]; then echo 'restic {version} compiled with go'; exit 0; fi\n"
                    f"exit {code}\n")
    path.chmod(0o755)
    feature.detect.cache_clear()
    return str(path)


def test_backup_and_copy_go_through_the_version_gate(tmp_path):
    from backupd.engine import copy

    old = Repository("dest", str(tmp_path / "repo"), Path("/pw"), restic_binary=_fake_restic(tmp_path, "0.14.0", 10))
    with pytest.raises(exitcodes.ResticError) as info:  # 0.14 has no exit code 10: not "no repository"
        backup.backup_paths(old, [str(tmp_path)], excludes=[], tags=[], host="h")
    assert not isinstance(info.value, exitcodes.RepositoryMissing)
    with pytest.raises(exitcodes.ResticError) as info:
        copy.copy(old, old, tags=["backupd"], host="h")
    assert not isinstance(info.value, exitcodes.RepositoryMissing)
    feature.detect.cache_clear()


def test_stuck_request_timeout_only_where_restic_has_it(tmp_path):
    from backupd.engine import command

    for version, expect in (("0.14.0", []), ("0.17.1", ["--stuck-request-timeout=45s"])):
        repo = Repository("d", "/r", Path("/pw"), restic_binary=_fake_restic(tmp_path, version, 0),
                          stuck_request_timeout=45)
        assert command.global_options(repo) == expect
        assert command.argv(repo, "snapshots")[2:] == ["--json", *expect]
    assert command.global_options(REPO) == []
    feature.detect.cache_clear()


def test_session_tokens_are_secret_too():
    repo = Repository("d", "s3:http://h/b/p", Path("/pw"), {"AWS_ACCESS_KEY_ID": "AKID",
                      "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": "tok-very-secret-session"})
    env = repo.environment()
    assert "AWS_SESSION_TOKEN" in env.secret and "AWS_SESSION_TOKEN" not in env.plain
    assert "tok-very-secret-session" not in env.scrub("oops tok-very-secret-session leaked")


def test_the_restic_version_is_remembered_until_the_binary_changes(tmp_path, monkeypatch):
    from backupd.engine import feature

    binary = tmp_path / "restic"
    binary.write_text("#!/bin/sh\necho 'restic 0.16.4 compiled with go1.21 on linux/amd64'\n")
    binary.chmod(0o755)
    memory = tmp_path / "state" / "restic-version.json"
    memory.parent.mkdir()
    monkeypatch.setattr(feature, "_memory", memory)
    feature.detect.cache_clear()
    assert feature.detect(str(binary)) == (0, 16, 4) and memory.exists()
    feature.detect.cache_clear()
    binary.write_text("#!/bin/sh\nexit 9\n")  # a run now would fail: the answer must come from memory
    import os
    st = os.stat(binary)
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns))
    stamp = feature._stamp(str(binary))
    memory.write_text(__import__("json").dumps({stamp: [0, 16, 4]}))
    assert feature.detect(str(binary)) == (0, 16, 4)
    feature.detect.cache_clear()
    binary.write_text("#!/bin/sh\necho 'restic 0.18.1 compiled with go1.24 on linux/amd64'\n")  # upgraded
    assert feature.detect(str(binary)) == (0, 18, 1)
    feature.detect.cache_clear()
    memory.write_text('{"x": "not a version"}')
    assert feature.detect(str(binary)) == (0, 18, 1)
    feature.detect.cache_clear()
