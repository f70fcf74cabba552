"""Lint: one test per guideline rule (finding present and absent), the example policy, and PolicySet."""

import copy
import json
import os
from pathlib import Path

import pytest

from backupd.config.credentials import LOAD
from backupd.errors import ConfigError
from backupd.policy.lint import lint_paths, load_policy_set

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "terminal.yaml"


def target(name, category, **extra):
    base = {"name": name, "category": category, "owner": "team", "frequency": "1d",
            "sources": {"paths": [f"/srv/{name}"]}, "retention": {"keep_daily": 14, "keep_weekly": 8},
            "destinations": ["worm"]}
    return {**base, **extra}


CLEAN = {
    "version": 1,
    "site": {"name": "Demo", "port": "nagoya"},
    "destinations": {
        "worm": {"kind": "s3", "endpoint": "http://127.0.0.1:8333", "bucket": "bkt-1", "object_lock": True,
                 "credentials_file": "s3.env", "password_file": "restic-password"},
    },
    "targets": [
        target("db", "container_data", rto="4h", frequency="1h"),
        target("prog-prod", "system_program", environment="production"),
        target("prog-dev", "system_program", environment="development"),
        target("logs-srv", "logs", source="server"),
        target("logs-net", "logs", source="network_device"),
    ],
}


@pytest.fixture
def secrets(tmp_path):
    directory = tmp_path / "secrets"
    directory.mkdir()
    for name in ("s3.env", "s3-writer.env", "restic-password"):
        (directory / name).write_text("AWS_ACCESS_KEY_ID=x\n")
        (directory / name).chmod(0o600)
    return directory


def policy(**changes):
    data = copy.deepcopy(CLEAN)
    data.update(changes)
    return data


def lint(tmp_path, secrets, *docs):
    paths = []
    for i, doc in enumerate(docs):
        paths.append(tmp_path / f"p{i}.yaml")
        paths[-1].write_text(json.dumps(doc, indent=1))  # JSON is YAML, and never has anchors
    return lint_paths(paths, secrets, env={})


def messages(result, severity=None):
    return [(f.field, f.message) for f in result.findings if severity in (None, f.severity)]


def has(result, field, text, severity="error"):
    return any(f.field == field and text in f.message and f.severity == severity for f in result.findings)


def test_clean_policy_has_no_findings(tmp_path, secrets):
    result = lint(tmp_path, secrets, CLEAN)
    assert result.findings == [] and not result.unreadable


def test_example_policy_lints_clean(secrets):
    result = lint_paths([EXAMPLE], secrets, env={}, held=LOAD["backup"])  # as the daemon loads it
    assert [str(f) for f in result.findings] == []
    names = {t.name for lp in result.policies for t in lp.policy.targets}
    assert {"tos-db", "tos-programs-development", "tos-programs-evaluation", "network-device-logs"} <= names


def test_example_policy_directory_argument(tmp_path, secrets):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "terminal.yml").write_text(EXAMPLE.read_text())
    (tmp_path / "policies" / "README.txt").write_text("not a policy")
    policy_set = load_policy_set([tmp_path / "policies"], secrets, env={"TOS_ROOT": "/data/tos"},
                                 held=LOAD["backup"])
    assert policy_set.site.port == "nagoya"
    assert policy_set.target("tos-exports").sources.paths == ["/data/tos/exports"]
    assert policy_set.target("tos-db").sources.dump.database == "tos"


@pytest.mark.parametrize("category", ["system_program", "container_data", "logs"])
def test_missing_required_category(tmp_path, secrets, category):
    data = policy(targets=[t for t in CLEAN["targets"] if t["category"] != category])
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets", f"no target with category {category}", "warning")
    assert result.gaps and not result.errors  # reported (lint exit 1), but backups still run
    assert len([m for m in messages(result) if "no target with category" in m[1]]) == 1


def test_required_categories_across_files(tmp_path, secrets):
    first = policy(targets=CLEAN["targets"][:1])
    second = {"version": 1, "targets": CLEAN["targets"][1:]}
    assert lint(tmp_path, secrets, first, second).findings == []


def test_missing_categories_one_finding_each(tmp_path, secrets):
    result = lint(tmp_path, secrets, policy(targets=[target("docs", "documentation")]))
    assert len([m for m in messages(result, "warning") if "no target with category" in m[1]]) == 3


def test_frequency_rarer_than_yearly(tmp_path, secrets):
    data = policy()
    data["targets"][1].update(frequency="2y", retention={"keep_yearly": 3})
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets[1].frequency", "once a year", "warning")
    data["targets"][1]["frequency"] = "1y"
    assert not any("once a year" in m for _, m in messages(lint(tmp_path, secrets, data)))


@pytest.mark.parametrize(
    ("min_history", "severity"),
    [("2w", "warning"), ("20d", "warning"), ("3w", "warning"), ("5w", "warning"), ("6w", None), ("10w", None)],
)
def test_min_history(tmp_path, secrets, min_history, severity):
    data = policy()
    data["targets"][0]["retention"] = {"keep_weekly": 20, "min_history": min_history}
    result = lint(tmp_path, secrets, data)
    found = [f for f in result.findings if f.field == "targets[0].retention.min_history"]
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_retention_reach_too_short(tmp_path, secrets):
    data = policy()
    data["targets"][0]["retention"] = {"keep_hourly": 24, "keep_daily": 14}
    result = lint(tmp_path, secrets, data)
    finding = next(f for f in result.findings if f.field == "targets[0].retention")
    assert "reach back only 2w at frequency 1h, less than min_history 6w" in finding.message
    assert "keep_weekly: 6" in finding.message


def test_retention_reach_counts_frequency(tmp_path, secrets):
    data = policy()
    # weekly backups: keep_daily 14 keeps 14 weekly snapshots = 14 weeks
    data["targets"][1].update(frequency="1w", retention={"keep_daily": 14})
    assert not has(lint(tmp_path, secrets, data), "targets[1].retention", "reach back", "warning")
    # keep_last at daily frequency: 42 x 1d = 6w reaches exactly
    data["targets"][1].update(frequency="1d", retention={"keep_last": 42})
    assert not has(lint(tmp_path, secrets, data), "targets[1].retention", "reach back", "warning")
    data["targets"][1].update(retention={"keep_last": 41})
    assert has(lint(tmp_path, secrets, data), "targets[1].retention", "reach back only 41d", "warning")


def test_retention_all_zero(tmp_path, secrets):
    data = policy()
    data["targets"][2]["retention"] = {}
    assert has(lint(tmp_path, secrets, data), "targets[2].retention", "reach back only 0s", "warning")


def test_dev_or_eval_system_program_warning(tmp_path, secrets):
    data = policy(targets=[t for t in CLEAN["targets"] if t["name"] != "prog-dev"])
    assert has(lint(tmp_path, secrets, data), "targets", "development or evaluation", "warning")
    data["targets"].append(target("prog-eval", "system_program", environment="evaluation"))
    assert lint(tmp_path, secrets, data).findings == []


def test_network_device_logs_warning(tmp_path, secrets):
    data = policy(targets=[t for t in CLEAN["targets"] if t["name"] != "logs-net"])
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets", "network_device", "warning") and result.errors == []


def test_target_needs_object_locked_s3(tmp_path, secrets):
    data = policy()
    data["destinations"]["usb"] = {"kind": "local", "path": "/mnt/usb", "password_file": "restic-password",
                                   "offline": True}
    data["targets"][0]["destinations"] = ["usb"]
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets[0].destinations", "object_lock: true")
    data["targets"][0]["destinations"] = ["worm", "usb"]
    assert lint(tmp_path, secrets, data).findings == []
    data["destinations"]["worm"]["object_lock"] = False
    assert len(lint(tmp_path, secrets, data).errors) == len(CLEAN["targets"])


def test_container_data_needs_rto(tmp_path, secrets):
    data = policy()
    del data["targets"][0]["rto"]
    result = lint(tmp_path, secrets, data)
    finding = next(f for f in result.findings if f.field == "targets[0].rto")
    assert finding.line == data_line(tmp_path / "p0.yaml", '"name": "db"') - 1 and "cargo-handling" in finding.message


def data_line(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_duplicate_target_names_across_files(tmp_path, secrets):
    second = {"version": 1, "targets": [target("db", "documentation")]}
    result = lint(tmp_path, secrets, CLEAN, second)
    finding = next(f for f in result.errors if "already defined" in f.message)
    assert finding.file.endswith("p1.yaml") and finding.field == "targets[0].name"
    line = data_line(tmp_path / "p0.yaml", '"name": "db"')
    assert f"p0.yaml:{line}" in finding.message


def test_duplicate_destination_names_across_files(tmp_path, secrets):
    second = {"version": 1, "destinations": copy.deepcopy(CLEAN["destinations"])}
    result = lint(tmp_path, secrets, CLEAN, second)
    assert has(result, "destinations.worm", "already defined")
    assert len(result.errors) == 1


def test_unknown_destination(tmp_path, secrets):
    data = policy()
    data["targets"][3]["destinations"] = ["worm", "wrom"]
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets[3].destinations[1]", "unknown destination 'wrom'; known: worm")
    assert len(result.errors) == 1


def test_unknown_key(tmp_path, secrets):
    data = policy()
    data["targets"][0]["retention"]["keep_dayly"] = 3
    assert has(lint(tmp_path, secrets, data), "targets[0].retention.keep_dayly", "unknown key")


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "bad\x01name"])
def test_unsafe_target_name(tmp_path, secrets, name):
    data = policy()
    data["targets"][0]["name"] = name
    result = lint(tmp_path, secrets, data)
    assert has(result, "targets[0].name", "target name")


def test_governance_needs_pilot(tmp_path, secrets):
    data = policy()
    data["destinations"]["worm"]["lock_mode"] = "GOVERNANCE"
    assert has(lint(tmp_path, secrets, data), "destinations.worm.lock_mode", "COMPLIANCE")
    data["destinations"]["worm"]["pilot"] = True
    assert lint(tmp_path, secrets, data).findings == []


def test_missing_credentials_file(tmp_path, secrets):
    (secrets / "s3.env").unlink()
    result = lint(tmp_path, secrets, CLEAN)
    assert has(result, "destinations.worm.credentials_file", "cannot read")
    assert len(result.errors) == 1


def test_unreadable_password_file(tmp_path, secrets, monkeypatch):
    """Root reads any file, so the permission check is made to see what a service user would."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("restic-password") else real_access(p, mode))
    assert has(lint(tmp_path, secrets, CLEAN), "destinations.worm.password_file", "not a regular file readable")


def test_secret_file_is_a_directory(tmp_path, secrets):
    (secrets / "restic-password").unlink()
    (secrets / "restic-password").mkdir()
    assert has(lint(tmp_path, secrets, CLEAN), "destinations.worm.password_file", "not a regular file readable")


def test_group_readable_secret_warns(tmp_path, secrets):
    (secrets / "restic-password").chmod(0o640)
    result = lint(tmp_path, secrets, CLEAN)
    assert has(result, "destinations.worm.password_file", "chmod 600", "warning") and result.errors == []


def test_absolute_secret_path_ignores_secrets_dir(tmp_path, secrets):
    data = policy()
    data["destinations"]["worm"]["password_file"] = str(secrets / "restic-password")
    errors = lint(tmp_path, tmp_path / "elsewhere", data).errors
    assert [f.field for f in errors] == ["destinations.worm.credentials_file"]


def test_no_paths_given(secrets):
    result = lint_paths([], secrets, env={})
    assert result.unreadable and "no policy files" in result.errors[0].message


def test_site_required_once(tmp_path, secrets):
    result = lint(tmp_path, secrets, policy(site=None))
    assert has(result, "site", "no file defines")
    other = {"version": 1, "site": {"name": "Other", "port": "kobe"}}
    assert has(lint(tmp_path, secrets, CLEAN, other), "site", "conflicts")


def test_invalid_file_skips_set_wide_checks(tmp_path, secrets):
    result = lint(tmp_path, secrets, policy(targets=[]), {"version": 1, "targets": [{"name": "x"}]})
    assert not any("no target with category" in m for _, m in messages(result))
    assert result.errors


def test_str_format(tmp_path, secrets):
    data = policy()
    data["targets"][0]["frequency"] = "2y"
    finding = next(f for f in lint(tmp_path, secrets, data).findings if f.field == "targets[0].frequency")
    line = data_line(tmp_path / "p0.yaml", '"frequency": "2y"')
    assert str(finding).startswith(f"{tmp_path / 'p0.yaml'}:{line}: targets[0].frequency: warning: every 2y")


def test_unreadable_and_missing_paths(tmp_path, secrets):
    (tmp_path / "bin.yaml").write_bytes(b"\x00\x01")
    result = lint_paths([tmp_path / "bin.yaml", tmp_path / "missing.yaml"], secrets, env={})
    assert result.unreadable and len(result.errors) == 2


def test_load_policy_set_raises_config_error(tmp_path, secrets):
    data = policy()
    data["targets"][0]["destinations"] = ["nowhere"]
    lint(tmp_path, secrets, data)
    with pytest.raises(ConfigError, match=r"p0.yaml:\d+: targets\[0\].destinations\[0\]: error") as info:
        load_policy_set([tmp_path / "p0.yaml"], secrets, env={})
    assert info.value.exit_code == 2


def test_policy_set_accessors(tmp_path, secrets):
    (secrets / "restic-password").chmod(0o644)
    lint(tmp_path, secrets, CLEAN)
    policy_set = load_policy_set([tmp_path], secrets, env={})
    assert len(policy_set.warnings) == 1
    assert [t.name for t in policy_set.targets][:2] == ["db", "prog-prod"]
    assert policy_set.destinations["worm"].password_file == secrets / "restic-password"
    assert policy_set.target("db").rto is not None
    with pytest.raises(ConfigError, match="no target named 'nope'; known: db, prog-prod"):
        policy_set.target("nope")


def test_guideline_gaps_never_block_the_policy_set(tmp_path, secrets):
    data = policy(targets=[target("docs", "documentation", frequency="2y", retention={"keep_yearly": 1,
                                                                                      "min_history": "1w"})])
    result = lint(tmp_path, secrets, data)
    assert not result.errors and len(result.gaps) == 5  # 3 categories, frequency, min_history
    policy_set = load_policy_set([tmp_path / "p0.yaml"], secrets, env={})
    assert [t.name for t in policy_set.targets] == ["docs"] and len(policy_set.warnings) >= 5


def test_without_a_logs_target_status_runs_and_lint_still_exits_1(tmp_path, secrets):
    from tests.unit.cli_helper import cli

    data = policy(targets=[t for t in CLEAN["targets"] if t["category"] != "logs"])
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(json.dumps(data))
    config = tmp_path / "backupd.yaml"
    config.write_text(f"policies: [policies/*.yaml]\nstate_dir: state\nsecrets_dir: '{secrets}'\nhost: h\n")
    code, doc = cli("status", "--config", str(config))
    assert code == 1 and {t["status"] for t in doc["targets"]} == {"never"}  # runs; never backed up
    code, doc = cli("policy", "lint", "--config", str(config))
    assert code == 1 and any(f["gap"] and "category logs" in f["message"] for f in doc["findings"])
