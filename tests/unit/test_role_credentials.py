"""One credentials model per role: each role needs only the credential files it reads (a file only another
role needs never stops it), and `policy lint --role` reports what the role reads and its unit does not give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backupd.actions import lint as lint_action
from backupd.actions.common import role_credentials
from backupd.commands.common import load_config
from backupd.config import loader as config
from backupd.errors import ConfigError
from backupd.policy.lint import load_policy_set
from tests.unit.cli_helper import cli

FIELDS = {"credentials_file": "s3-writer.env", "password_file": "restic-password",
          "maintainer_credentials_file": "s3-maintainer.env", "auditor_credentials_file": "s3-auditor.env",
          "canary_credentials_file": "s3-canary.env"}


def _setup(tmp_path: Path, role: str, present: tuple[str, ...], secrets_dir: str | None = None) -> Path:
    """A policy naming every role's file, a secrets_dir holding only `present`, and a config of `role`."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    for name in present:
        (secrets / name).write_text("AWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n")
        (secrets / name).chmod(0o600)
    dest = {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt-1", "object_lock": True, **FIELDS}
    targets = [{"name": n, "category": c, "owner": "ops", "frequency": "1d", "sources": {"paths": [f"/srv/{n}"]},
                "destinations": ["worm"], "retention": {"keep_daily": 14, "keep_weekly": 8}, **extra}
               for n, c, extra in [("db", "container_data", {"rto": "4h"}),
                                   ("prog", "system_program", {"environment": "development"}),
                                   ("net", "logs", {"source": "network_device"})]]
    (tmp_path / "p.yaml").write_text(json.dumps({"version": 1, "site": {"name": "T", "port": "other", "host": "tos-1"},
                                                 "destinations": {"worm": dest}, "targets": targets}))
    (tmp_path / "restore_tests").mkdir(exist_ok=True)
    extra = "hosts: [tos-1]\nhost: verifier-1\n" if role == "verifier" else ""
    path = tmp_path / "backupd.yaml"
    path.write_text(f"role: {role}\npolicies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/state'\n"
                    f"secrets_dir: '{secrets_dir or secrets}'\nrestore_tests: '{tmp_path}/restore_tests'\n" + extra)
    return path


def _load(path: Path):
    cfg = config.load(path)
    return cfg, load_policy_set(cfg.policy_files(), cfg.secrets_dir, held=cfg.secrets_held())


def test_the_daemon_loads_a_policy_naming_auditor_and_maintainer_files_it_cannot_read(tmp_path):
    cfg, policy_set = _load(_setup(tmp_path, "backup", ("s3-writer.env", "restic-password")))
    assert role_credentials(cfg, "worm", policy_set.destinations["worm"]).name == "s3-writer.env"


def test_the_maintenance_role_needs_no_writer_keys_and_acts_with_the_maintainers(tmp_path):
    cfg, policy_set = _load(_setup(tmp_path, "maintenance", ("s3-maintainer.env", "restic-password")))
    assert cfg.maintenance and role_credentials(cfg, "worm", policy_set.destinations["worm"]).name == \
        "s3-maintainer.env"


def test_the_maintenance_role_without_its_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(_setup(tmp_path, "maintenance", ("s3-writer.env", "restic-password")))
    assert "maintainer_credentials_file" in str(err.value) and "s3-maintainer.env" in str(err.value)
    assert "s3-writer.env" not in str(err.value) and "s3-auditor.env" not in str(err.value)


def test_the_verifier_loads_without_writer_or_maintainer_keys(tmp_path):
    cfg, policy_set = _load(_setup(tmp_path, "verifier", ("s3-auditor.env", "restic-password")))
    assert role_credentials(cfg, "worm", policy_set.destinations["worm"]).name == "s3-auditor.env"


@pytest.mark.parametrize("command", ["backup", "copy", "keys rotate", "incident start"])
def test_the_maintenance_role_refuses_what_needs_the_writer(tmp_path, command):
    path = _setup(tmp_path, "maintenance", ("s3-maintainer.env", "restic-password"))
    with pytest.raises(ConfigError, match=f"{command} refused: .* has role: maintenance"):
        load_config(path, writes=command)
    assert load_config(path, writes="extend-locks").maintenance


def _lint(path: Path, role: str):
    code, doc = cli("policy", "lint", "--role", role, "--config", str(path))
    return code, [f"{f['field']}: {f['message']}" for f in doc["findings"] if f["severity"] == "error"]


@pytest.mark.parametrize("role, config_role, present, missing", [
    ("daemon", "backup", ("s3-writer.env", "restic-password", "s3-auditor.env"), "canary_credentials_file"),
    ("maintenance", "maintenance", ("restic-password", "s3-writer.env"), "maintainer_credentials_file"),
    ("verifier", "verifier", ("restic-password", "s3-canary.env"), "auditor_credentials_file"),
])
def test_lint_role_reports_only_the_files_that_role_reads(tmp_path, role, config_role, present, missing):
    code, errors = _lint(_setup(tmp_path, config_role, present), role)
    assert code == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"destinations.worm.{missing}: cannot read ") and FIELDS[missing] in errors[0]


@pytest.mark.parametrize("role, config_role, present", [
    ("daemon", "backup", ("s3-writer.env", "restic-password", "s3-auditor.env", "s3-canary.env")),
    ("maintenance", "maintenance", ("restic-password", "s3-maintainer.env")),
    ("verifier", "verifier", ("restic-password", "s3-auditor.env", "s3-canary.env")),
])
def test_lint_role_is_clean_with_exactly_the_roles_files(tmp_path, role, config_role, present):
    assert _lint(_setup(tmp_path, config_role, present), role) == (0, [])


def test_lint_role_maintenance_needs_the_field_named(tmp_path):
    path = _setup(tmp_path, "maintenance", ("restic-password",))
    policy = json.loads((tmp_path / "p.yaml").read_text())
    del policy["destinations"]["worm"]["maintainer_credentials_file"]
    (tmp_path / "p.yaml").write_text(json.dumps(policy))
    code, errors = _lint(path, "maintenance")
    assert code == 1 and errors == ["destinations.worm: no maintainer_credentials_file: this role acts on the "
                                    "destination with that identity only"]


def test_lint_role_judges_a_stopped_unit_by_its_load_credentials(tmp_path, monkeypatch):
    """Run by hand, the unit's credentials directory does not exist: the unit file says what it hands over."""
    run_dir = "/run/credentials/backupd-maintenance.service"
    assert not Path(run_dir).exists()
    path = _setup(tmp_path, "maintenance", (), secrets_dir=run_dir)
    units = tmp_path / "units"
    units.mkdir()
    monkeypatch.setattr(lint_action, "UNIT_DIRS", (units,))
    unit = units / "backupd-maintenance.service"
    keys = tmp_path / "maintenance-secrets" / "s3-maintainer.env"
    keys.parent.mkdir()
    password = tmp_path / "restic-password"
    password.write_text("pw\n")
    unit.write_text(f"[Service]\nLoadCredential=restic-password:{password}\n"
                    f"LoadCredential=s3-writer.env:{keys}\n")  # the old alias: the maintainer's keys as the writer's
    code, errors = _lint(path, "maintenance")
    assert code == 1 and errors == [f"destinations.worm.maintainer_credentials_file: {unit} does not load "
                                    "s3-maintainer.env (the maintenance role reads it: add "
                                    "LoadCredential=s3-maintainer.env:<file>)"]
    unit.write_text(f"[Service]\nLoadCredential=restic-password:{password}\n"
                    f"LoadCredential=s3-maintainer.env:{keys}\n")
    code, errors = _lint(path, "maintenance")
    assert code == 1 and errors == [f"destinations.worm.maintainer_credentials_file: cannot read {keys} "
                                    f"(LoadCredential=s3-maintainer.env of {unit})"]
    keys.write_text("AWS_ACCESS_KEY_ID=k\nAWS_SECRET_ACCESS_KEY=s\n")
    assert _lint(path, "maintenance") == (0, [])


def test_lint_role_daemon_reports_the_units_keyless_auditor_default(tmp_path):
    """backupd.service starts without s3-auditor.env (SetCredential= default); its role lint still says so."""
    path = _setup(tmp_path, "backup", ("s3-writer.env", "restic-password", "s3-canary.env"))
    (tmp_path / "secrets" / "s3-auditor.env").write_text("# no /etc/backupd/secrets/s3-auditor.env\n")
    (tmp_path / "secrets" / "s3-auditor.env").chmod(0o600)
    code, errors = _lint(path, "daemon")
    assert code == 1 and errors == [f"destinations.worm.auditor_credentials_file: {tmp_path}/secrets/s3-auditor.env: "
                                    "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (KEY=VALUE lines) (the backup "
                                    "role reads it: backupd.service must load it)"]
    assert cli("policy", "lint", "--config", str(path))[0] == 0  # loading as the daemon: not needed to back up
