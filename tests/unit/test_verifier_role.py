"""The verifier role: read-only restic (--no-lock, no writing subcommand), auditor keys, refusals, hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backupd.actions.common import repository
from backupd.config import loader as config
from backupd.engine import command
from backupd.engine.repository import Repository
from backupd.errors import ConfigError
from tests.unit.cli_helper import cli


def _repo(read_only: bool) -> Repository:
    return Repository("worm", "s3:http://127.0.0.1:9/b/r", Path("/pw"), {}, None, "restic", read_only=read_only)


@pytest.mark.parametrize("sub", ["snapshots", "restore", "dump", "check", "stats", "cat"])
def test_a_read_only_repository_reads_with_no_lock(sub):
    assert command.argv(_repo(True), sub, "x")[:3] == ["restic", sub, "--no-lock"]
    assert "--no-lock" not in command.argv(_repo(False), sub, "x")


def test_no_lock_is_not_given_twice():
    assert command.argv(_repo(True), "list", "locks", "--no-lock").count("--no-lock") == 1


@pytest.mark.parametrize("sub", ["init", "backup", "forget", "prune", "tag", "unlock", "copy", "key", "rewrite"])
def test_a_read_only_repository_refuses_every_writing_subcommand(sub):
    with pytest.raises(ConfigError, match=f"restic {sub} on worm refused: this is a read-only"):
        command.argv(_repo(True), sub)


def _write_policy(tmp_path: Path, auditor: bool = True, site_host: str | None = None) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("s3-auditor.env", "restic-password"):  # no writer keys on a verifier
        (secrets / name).write_text("AWS_ACCESS_KEY_ID=ro\nAWS_SECRET_ACCESS_KEY=ro-secret\n")
        (secrets / name).chmod(0o600)
    dest = {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt-1", "object_lock": True,
            "credentials_file": "s3-writer.env", "password_file": "restic-password"}
    if auditor:
        dest["auditor_credentials_file"] = "s3-auditor.env"
    targets = [{"name": n, "category": c, "owner": "ops@example.jp", "frequency": "1d",
                "sources": {"paths": [f"/srv/{n}"]}, "destinations": ["worm"],
                "retention": {"keep_daily": 14, "keep_weekly": 8}, **extra}
               for n, c, extra in [("db", "container_data", {"rto": "4h"}),
                                   ("prog", "system_program", {"environment": "production"}),
                                   ("net", "logs", {"source": "network_device"})]]
    site = {"name": "T", "port": "other", **({"host": site_host} if site_host else {})}
    (tmp_path / "p.yaml").write_text(json.dumps({"version": 1, "site": site, "destinations": {"worm": dest},
                                                 "targets": targets}))
    return secrets


def _config(tmp_path: Path, extra: str = "role: verifier\n") -> Path:
    path = tmp_path / "verifier.yaml"
    path.write_text(f"policies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/vstate'\n"
                    f"secrets_dir: '{tmp_path}/secrets'\nhost: verifier-01\n" + extra)
    return path


@pytest.mark.parametrize("argv", [["backup"], ["forget"], ["prune"], ["copy"], ["extend-locks"], ["daemon", "--once"],
                                  ["keys", "rotate"], ["incident", "preserve", "--path", "/x"],
                                  ["incident", "start", "--reason", "x"], ["incident", "end", "--summary", "x"],
                                  ["accept", "--target", "db", "--snapshot", "abc", "--reason", "ok"]])
def test_writing_commands_refuse_in_the_verifier_role_with_exit_2(tmp_path, argv):
    _write_policy(tmp_path)
    code, doc = cli(*argv, "--config", str(_config(tmp_path)))
    assert code == 2
    assert doc["error"].startswith(f"{' '.join(argv[:2]) if argv[0] in ('keys', 'incident') else argv[0]} "
                                   "refused: ") and "role: verifier" in doc["error"]


def test_the_verifier_lints_without_writer_keys_and_opens_with_the_auditor_keys(tmp_path):
    from backupd.commands.common import load_policies

    _write_policy(tmp_path, site_host="tos-01")
    cfg = config.load(_config(tmp_path))
    policy_set = load_policies(cfg)  # s3-writer.env is absent: not an error for a verifier
    assert cfg.host == "verifier-01" and cfg.backup_hosts() == ["tos-01"]
    repo = repository(cfg, "worm", policy_set.destinations["worm"])
    assert repo.read_only and repo.s3_keys["AWS_ACCESS_KEY_ID"] == "ro"


def test_hosts_overrides_the_site_host(tmp_path):
    from backupd.commands.common import load_policies

    _write_policy(tmp_path, site_host="tos-01")
    cfg = config.load(_config(tmp_path, "role: verifier\nhosts: [tos-02, tos-03]\n"))
    load_policies(cfg)
    assert cfg.backup_hosts() == ["tos-02", "tos-03"]


def test_a_verifier_without_hosts_or_site_host_is_a_config_error(tmp_path):
    _write_policy(tmp_path)
    code, doc = cli("drill", "--config", str(_config(tmp_path)))
    assert code == 2 and "role verifier needs `hosts:`" in doc["error"]


def test_a_verifier_needs_auditor_credentials(tmp_path):
    from backupd.commands.common import load_policies

    _write_policy(tmp_path, auditor=False, site_host="tos-01")
    cfg = config.load(_config(tmp_path))
    policy_set = load_policies(cfg)
    with pytest.raises(ConfigError, match="destination worm: role verifier reads with auditor_credentials_file"):
        repository(cfg, "worm", policy_set.destinations["worm"])


@pytest.mark.parametrize("extra, words", [("role: auditor\n", ["role", "verifier", "auditor"]),
                                          ("hosts: [tos-01]\n", ["hosts is only used with role: verifier"]),
                                          ("role: verifier\nhosts: []\n", ["hosts"])])
def test_bad_role_settings_are_config_errors(tmp_path, extra, words):
    with pytest.raises(ConfigError) as err:
        config.load(_config(tmp_path, extra))
    assert all(w in str(err.value) for w in words), err.value


def test_the_backup_role_reads_its_own_host(tmp_path):
    cfg = config.load(_config(tmp_path, ""))
    assert not cfg.verifier and cfg.backup_hosts() == ["verifier-01"] and cfg.secrets_held() == {"password_file", "credentials_file"}


def test_evidence_key_creates_the_verifier_signing_key(tmp_path):
    _write_policy(tmp_path)
    code, doc = cli("evidence", "key", "--config", str(_config(tmp_path)))
    assert code == 0 and doc["role"] == "verifier" and len(doc["key_fingerprint"]) == 16
    assert Path(doc["public_key"]) == tmp_path / "vstate" / "keys" / "evidence-ed25519.pub"
    assert (tmp_path / "vstate" / "keys" / "evidence-ed25519.key").stat().st_mode & 0o077 == 0


def test_snapshots_of_several_backup_hosts_are_listed_with_one_host_flag_each(monkeypatch):
    from backupd.engine import snapshots
    from backupd.process.execute import Completed

    seen = []

    def fake_run(repo, sub, *args, **kwargs):
        seen.append(command.argv(repo, sub, *args))
        return Completed(argv=[], returncode=0, stdout=b"[]")

    monkeypatch.setattr(snapshots.command, "run", fake_run)
    snapshots.list_snapshots(_repo(True), tags=["backupd"], host=["tos-01", "tos-02", ""])
    snapshots.list_snapshots(_repo(False), host="")
    assert seen[0] == ["restic", "snapshots", "--no-lock", "--json", "--host", "tos-01", "--host", "tos-02",
                       "--tag", "backupd"]
    assert "--host" not in seen[1]


def test_the_verifier_mirrors_evidence_only_with_its_evidence_keys(tmp_path):
    from types import SimpleNamespace

    from backupd.evidence import mirror, settings

    dest = SimpleNamespace(credentials_file=tmp_path / "s3-writer.env")
    cfg = config.load(_config(tmp_path, "role: verifier\nevidence: {mirror: worm}\n"))
    with pytest.raises(ConfigError, match="role verifier: set evidence.credentials_file"):
        mirror.credentials_of(cfg, settings.of(cfg), dest)  # never falls back to the writer's keys
    cfg = config.load(_config(tmp_path, "role: verifier\nevidence: {mirror: worm, credentials_file: ev.env}\n"))
    assert mirror.credentials_of(cfg, settings.of(cfg), dest) == tmp_path / "secrets" / "ev.env"
    backup = config.load(_config(tmp_path, "evidence: {mirror: worm}\n"))
    assert mirror.credentials_of(backup, settings.of(backup), dest) == dest.credentials_file


def test_a_verifier_named_like_the_host_it_verifies_is_a_config_error(tmp_path):
    _write_policy(tmp_path, site_host="verifier-01")
    code, doc = cli("drill", "--config", str(_config(tmp_path)))
    assert code == 2 and "the verifier's own name must differ from the backup hosts" in doc["error"]


def test_policy_lint_on_the_verifier_does_not_ask_for_writer_keys(tmp_path):
    _write_policy(tmp_path, site_host="tos-01")
    code, doc = cli("policy", "lint", "--config", str(_config(tmp_path)))
    assert code in (0, 1) and "s3-writer.env" not in str(doc), doc  # 1: the small policy's guideline gaps
