"""Schema: models, defaults, resolution of secret files, and the committed JSON Schema."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from backupd.policy.schema import LocalDestination, Policy, S3Destination, check_name, json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "backupd" / "policy" / "policy.schema.json"


def policy_data(**changes):
    data = {
        "version": 1,
        "site": {"name": "T", "port": "nagoya"},
        "destinations": {
            "worm": {"kind": "s3", "endpoint": "http://127.0.0.1:8333", "bucket": "bkt-1", "object_lock": True,
                     "credentials_file": "s3.env", "password_file": "/abs/pw"},
            "usb": {"kind": "local", "path": "/mnt/usb", "password_file": "pw", "offline": True},
        },
        "targets": [
            {"name": "db", "category": "container_data", "owner": "o", "rto": "4h", "frequency": "1h",
             "sources": {"dump": {"kind": "pg_dump", "database": "tos", "port": "5432"}},
             "destinations": ["worm"]},
        ],
    }
    data.update(changes)
    return data


def test_committed_json_schema_matches_models():
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()


def test_valid_policy_defaults_and_resolution():
    policy = Policy.model_validate(policy_data(), context={"secrets_dir": Path("/etc/backupd/secrets")})
    worm, usb = policy.destinations["worm"], policy.destinations["usb"]
    assert isinstance(worm, S3Destination) and isinstance(usb, LocalDestination)
    assert worm.credentials_file == Path("/etc/backupd/secrets/s3.env")
    assert worm.password_file == Path("/abs/pw")
    assert usb.password_file == Path("/etc/backupd/secrets/pw")
    assert (worm.path, worm.region, worm.lock_mode, worm.pilot) == ("restic", "us-east-1", "COMPLIANCE", False)
    target = policy.targets[0]
    assert target.rpo == target.frequency == timedelta(hours=1)
    assert target.retention.min_history == timedelta(weeks=6)
    assert target.sources.dump.port == 5432 and target.sources.dump.filename == "tos.sql"
    assert policy.model_dump(mode="json")["targets"][0]["retention"]["min_history"] == "6w"


def test_command_dump_default_filename():
    data = policy_data()
    data["targets"][0]["sources"] = {"dump": {"kind": "command", "command": ["tos-export", "--all"]}}
    assert Policy.model_validate(data).targets[0].sources.dump.filename == "db.dump"


def errors_of(data):
    with pytest.raises(ValidationError) as info:
        Policy.model_validate(data)
    return {(e["loc"], e["type"]) for e in info.value.errors()}


def test_unknown_key_forbidden():
    data = policy_data()
    data["targets"][0]["retention"] = {"keep_dialy": 3}
    assert (("targets", 0, "retention", "keep_dialy"), "extra_forbidden") in errors_of(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"environment": "production"}, "only allowed with category system_program"),
        ({"category": "system_program"}, "needs 'environment'"),
        ({"category": "logs"}, "needs 'source'"),
        ({"sources": {"paths": ["/a"], "dump": {"kind": "pg_dump", "database": "x"}}}, "exactly one"),
        ({"sources": {"dump": {"kind": "pg_dump"}}}, "needs 'database'"),
        ({"sources": {"dump": {"kind": "pg_dump", "database": "-x"}}}, "must not start with '-'"),
        ({"sources": {"dump": {"kind": "command", "command": ["x"], "database": "d"}}}, "only allowed with kind pg_"),
        ({"sources": {"paths": ["srv/tos"]}}, "relative"),
        ({"frequency": "0s"}, "greater than zero"),
        ({"destinations": []}, "at least 1"),
    ],
)
def test_target_rules(change, message):
    data = policy_data()
    data["targets"][0].update(change)
    with pytest.raises(ValidationError, match=message):
        Policy.model_validate(data)


@pytest.mark.parametrize("name", ["../etc", "a/b", ".hidden", "a..b", "tab\tname", "x" * 65, "", "-lead"])
def test_unsafe_names_rejected(name):
    with pytest.raises(ValueError):
        check_name(name)
    data = policy_data()
    data["targets"][0]["name"] = name
    with pytest.raises(ValidationError):
        Policy.model_validate(data)


def test_unsafe_destination_name_rejected():
    data = policy_data()
    data["destinations"]["../x"] = data["destinations"].pop("usb")
    with pytest.raises(ValidationError, match="destination name"):
        Policy.model_validate(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "ftp"}, "does not match"),
        ({"bucket": "Bad_Bucket"}, "not a valid S3 bucket"),
        ({"endpoint": "s3.example.com"}, "http"),
        ({"endpoint": "http://key:secret@host"}, "without user info"),
        ({"lock_mode": "NONE"}, "COMPLIANCE"),
        ({"path": "../x"}, "key prefix"),
    ],
)
def test_s3_destination_rules(change, message):
    data = policy_data()
    data["destinations"]["worm"].update(change)
    with pytest.raises(ValidationError, match=message) as info:
        Policy.model_validate(data)
    assert "secret@" not in str(info.value).split("input_value")[0]


def test_local_destination_needs_absolute_path():
    data = policy_data()
    data["destinations"]["usb"]["path"] = "mnt/usb"
    with pytest.raises(ValidationError, match="absolute"):
        Policy.model_validate(data)


@pytest.mark.parametrize("path", ["evidence", "evidence/tos-01", "/evidence/x", ".backupd-incident",
                                  ".backupd-canary/repo"])
def test_an_s3_repository_path_inside_a_reserved_prefix_is_refused(path):
    """The writer may write its repository path: under evidence/ it would reach every host's evidence."""
    data = policy_data()
    data["destinations"]["worm"]["path"] = path
    with pytest.raises(ValidationError, match="reserves"):
        Policy.model_validate(data)
    data["destinations"]["worm"]["path"] = "evidence-repo/tos-01"
    Policy.model_validate(data)


def test_version_must_be_1():
    assert (("version",), "literal_error") in errors_of(policy_data(version=2))
