"""Signing-key rotation (a key-rotation record signed by both keys) and keyrings (roles, the kinds they
may sign, who attested each drill): verify and export judge them; the CLI exits 1 on a finding."""

from __future__ import annotations

import json
import tarfile

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.actions import evidence_verify
from backupd.cli import main
from backupd.config.loader import Config
from backupd.evidence import keyring, keys, record, record_format
from backupd.evidence.ledger import Ledger
from backupd.evidence.rotation import rotate
from backupd.evidence.verify import verify_lines
from tests.unit.cli_helper import write_secrets


def _cfg(tmp_path, name="state", host="tos-01"):
    return Config(path=None, state_dir=tmp_path / name, host=host)


def _pub(cfg):
    return cfg.state_dir / "keys" / keys.PUB_NAME


def _lines(cfg):
    return Ledger(cfg.state_dir).lines()


def cli(*args):
    result = CliRunner().invoke(main, [*args, "--json"])
    assert "Traceback" not in result.output, result.output
    out = result.output
    return result.exit_code, json.loads(out[out.index("{"):])  # after any warning lines (stderr is mixed in)


@pytest.fixture
def rotated(tmp_path):
    """Three records, a rotation, two more: (cfg, first public key, second public key)."""
    cfg = _cfg(tmp_path)
    for i in range(3):
        record(cfg, "backup", {"target": f"t{i}"})
    first = keys.read_public(_pub(cfg))
    rec = rotate(cfg, "yearly rotation")
    assert rec["seq"] == 4 and rec["kid"] == keys.fingerprint(first)
    for i in range(2):
        record(cfg, "backup", {"target": f"u{i}"})
    return cfg, first, keys.read_public(_pub(cfg))


def test_rotation_is_accepted_with_its_transition_record(rotated):
    cfg, first, second = rotated
    lines = _lines(cfg)
    assert [record_format.parse(l)["kid"] for l in lines] == [keys.fingerprint(first)] * 4 + \
        [keys.fingerprint(second)] * 2
    for pinned in ([first], [second]):  # the first key pinned at commissioning, or only the newest one
        report = verify_lines(lines, pinned)
        assert report.ok, report.problems
        assert [e["kid"] for e in report.epochs] == [keys.fingerprint(first), keys.fingerprint(second)]
    assert (cfg.state_dir / "keys" / "retired" / f"{keys.fingerprint(first)}.pub").exists()
    assert not keys.pending_path(cfg.state_dir).exists()


def test_key_change_without_a_transition_record_is_rejected(tmp_path):
    cfg = _cfg(tmp_path)
    for i in range(3):
        record(cfg, "backup", {"target": f"t{i}"})
    first = keys.read_public(_pub(cfg))
    kdir = cfg.state_dir / "keys"
    (kdir / keys.KEY_NAME).unlink()  # "lost" key regenerated, or an attacker's own key
    (kdir / keys.PUB_NAME).unlink()
    record(cfg, "backup", {"target": "t3"})
    second = keys.read_public(_pub(cfg))
    for pinned in ([first], [first, second]):
        report = verify_lines(_lines(cfg), pinned)
        assert not report.ok and report.problems[0].seq == 4
        assert "without a key-rotation record" in report.problems[0].message


def test_rotation_record_without_the_new_keys_proof_is_rejected(rotated):
    cfg, first, second = rotated
    lines = _lines(cfg)
    rec = record_format.parse(lines[3])
    forged = Ed25519PrivateKey.generate()  # proof made by another key than the one introduced
    data = dict(rec["data"], new_key_signature=__import__("base64").b64encode(forged.sign(b"x")).decode())
    key = Ed25519PrivateKey.generate()
    line = record_format.build(4, rec["prev"], rec["host"], rec["kind"], data, key, rec["time"])
    report = verify_lines(lines[:3] + [line] + lines[4:], [first])
    assert not report.ok and report.problems[0].seq == 4


def test_records_signed_by_the_retired_key_after_rotation_are_rejected(tmp_path):
    cfg = _cfg(tmp_path)
    record(cfg, "backup", {})
    stolen = keys.load_or_create(cfg.state_dir)  # the old key, copied by an attacker before the rotation
    first = stolen.public_key()
    rotate(cfg)
    lines = _lines(cfg)
    extra = record_format.build(3, record_format.line_hash(lines[-1]), "tos-01", "backup", {}, stolen)
    report = verify_lines(lines + [extra], [first])
    assert not report.ok and report.problems[0].seq == 3
    assert "retired by the key-rotation record 2" in report.problems[0].message


def test_rotate_key_cli(tmp_path):
    secrets = write_secrets(tmp_path / "secrets")
    policy = {"version": 1, "site": {"name": "Demo", "port": "nagoya"},
              "destinations": {"worm": {"kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt-1",
                                        "object_lock": True, "credentials_file": "s3-writer.env",
                                        "password_file": "restic-password"}},
              "targets": [{"name": "db", "category": "container_data", "owner": "ops", "frequency": "1d", "rto": "4h",
                           "sources": {"paths": ["/srv/db"]}, "destinations": ["worm"],
                           "retention": {"keep_daily": 14, "keep_weekly": 8}}]}
    (tmp_path / "p.yaml").write_text(json.dumps(policy))
    cfg_path = tmp_path / "backupd.yaml"
    cfg_path.write_text(f"policies: ['{tmp_path}/p.yaml']\nstate_dir: '{tmp_path}/state'\n"
                        f"secrets_dir: '{secrets}'\nhost: tos-01\n")
    record(_cfg(tmp_path), "backup", {})
    code, doc = cli("evidence", "rotate-key", "--reason", "test", "--config", str(cfg_path))
    assert code == 0, doc
    assert doc["seq"] == 2 and doc["old_kid"] != doc["new_kid"]
    code, doc = cli("evidence", "verify", str(Ledger(tmp_path / "state").path),  # only the new key pinned
                    "--public-key", str(_pub(_cfg(tmp_path))))
    assert code == 0, doc
    assert [k["kid"] for k in doc["ledger"]["keys"]][-1] == keys.fingerprint(
        keys.read_public(_pub(_cfg(tmp_path))))


def _keyring(path, host_pub, verifier_pub=None, host_kinds='["*"]'):
    text = f"roles:\n  backup-host:\n    public_key: {host_pub}\n    kinds: {host_kinds}\n"
    if verifier_pub:
        text += f"  verifier:\n    public_key: {verifier_pub}\n    kinds: [drill, check, storage_audit]\n"
    path.write_text(text)
    return path


@pytest.fixture
def roles(tmp_path):
    """A host ledger with a host-signed drill, a verifier ledger with a verifier-signed drill."""
    host, verifier = _cfg(tmp_path, "host"), _cfg(tmp_path, "verifier", host="verifier-01")
    record(host, "backup", {"target": "tos-db", "status": "ok"})
    record(host, "drill", {"target": "tos-db", "status": "pass"})
    record(verifier, "drill", {"target": "tos-db", "status": "pass"})
    record(verifier, "storage_audit", {"destinations": []})
    return host, verifier


def test_drill_signed_by_the_host_key_is_flagged_when_the_keyring_has_a_verifier(roles, tmp_path):
    host, verifier = roles
    ring = _keyring(tmp_path / "ring.yaml", _pub(host), _pub(verifier))
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 2
    assert "not by a verifier key" in doc["problems"][0]
    assert [(a["seq"], a["role"]) for a in doc["attestations"]] == [(2, "backup-host")]
    code, doc = cli("evidence", "verify", str(Ledger(verifier.state_dir).path), "--keyring", str(ring))
    assert code == 0, doc["problems"]
    assert [(a["kind"], a["role"], a["verifier"]) for a in doc["attestations"]] == [
        ("drill", "verifier", True), ("storage_audit", "verifier", True)]
    ring = _keyring(tmp_path / "no-verifier.yaml", _pub(host))  # no verifier role: the host's drill stands
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 0 and doc["attestations"][0]["role"] == "backup-host"


def test_keyring_kinds_limit_what_a_role_may_sign(roles, tmp_path):
    host, verifier = roles
    ring = _keyring(tmp_path / "ring.json", _pub(host), _pub(verifier), host_kinds="[drill]")
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 1 and "does not allow to sign backup records" in doc["problems"][0]


def test_bad_keyring_is_a_usage_error_naming_the_field(roles, tmp_path):
    host, _ = roles
    ring = tmp_path / "ring.yaml"
    ring.write_text("roles:\n  verifier:\n    public_key: missing.pub\n")
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 2 and "roles.verifier.public_key" in doc["error"]


def test_export_names_the_attesting_role_and_judges_separation_of_duties(roles, tmp_path, monkeypatch):
    from backupd.actions import evidence as action
    from backupd.actions import evidence_report

    host, verifier = roles
    ring = _keyring(tmp_path / "ring.yaml", _pub(host), _pub(verifier))
    monkeypatch.setattr(evidence_report, "inventory", lambda *a, **k: {})
    policy_set = type("P", (), {"targets": [], "destinations": {},
                                "site": type("S", (), {"name": "s", "port": "other", "specific_port": False})()})()
    out = tmp_path / "v.tar.gz"
    doc = action.export(verifier, policy_set, out, keyring=ring)
    assert doc["conformance"]["G5"] == "met"
    with tarfile.open(out) as tar:
        report = json.loads(tar.extractfile("report.json").read())
    assert report["attestations"][0]["role"] == "verifier" and report["keyring"]["roles"]["verifier"]["verifier"]
    doc = action.export(host, policy_set, tmp_path / "h.tar.gz", keyring=ring)
    assert doc["conformance"]["G5"] == "not met" and not doc["ok"]
    assert evidence_verify.verify(out, [_pub(verifier)])["ok"]


def test_rotated_key_keeps_its_role_and_export_verifies_from_the_first_key(rotated, tmp_path, monkeypatch):
    from backupd.actions import evidence as action
    from backupd.actions import evidence_report

    cfg, first, second = rotated
    record(cfg, "drill", {"target": "tos-db", "status": "pass"})
    first_pem = tmp_path / "first.pub"
    first_pem.write_bytes(keys.public_pem(first))
    ring = tmp_path / "ring.yaml"
    ring.write_text(f"backup-host: {{public_key: {first_pem}, kinds: ['*']}}\n")  # the roles: wrapper is optional
    report = verify_lines(_lines(cfg), [], keyring=keyring.load(ring))
    assert report.ok, report.problems
    assert report.attestations[-1]["role"] == "backup-host" and report.attestations[-1]["kid"] == \
        keys.fingerprint(second)
    monkeypatch.setattr(evidence_report, "inventory", lambda *a, **k: {})
    policy_set = type("P", (), {"targets": [], "destinations": {},
                                "site": type("S", (), {"name": "s", "port": "other", "specific_port": False})()})()
    out = tmp_path / "e.tar.gz"
    assert action.export(cfg, policy_set, out)["ok"]
    doc = evidence_verify.verify(out, [first_pem])  # the bundle holds the new key; the chain links it to the first
    assert doc["ok"], doc["problems"]


def test_a_process_holding_the_old_key_signs_with_the_new_one_after_a_concurrent_rotation(tmp_path):
    cfg = _cfg(tmp_path)
    record(cfg, "backup", {})
    stale = keys.load_or_create(cfg.state_dir)  # loaded by another process just before the rotation
    rotate(cfg)
    rec = record(cfg, "backup", {"target": "late"}, key=stale)
    assert rec["kid"] == keys.fingerprint(keys.read_public(_pub(cfg)))
    assert verify_lines(_lines(cfg), [stale.public_key()]).ok


def _hosts_keyring(path, host_pub, verifier_pub, host_hosts="[tos-01]", verifier_hosts="[verifier-01]"):
    path.write_text(f"roles:\n  backup-host:\n    public_key: {host_pub}\n    hosts: {host_hosts}\n"
                    f"  verifier:\n    public_key: {verifier_pub}\n    hosts: {verifier_hosts}\n"
                    f"    kinds: [drill, check, storage_audit]\n")
    return path


def test_a_key_bound_to_one_host_signing_records_of_another_is_flagged(roles, tmp_path):
    """A whole ledger in the verifier's name, signed by the backup host's key: one host throughout, so
    only the keyring's host binding tells that the key is not the verifier's."""
    host, verifier = roles
    fake = _cfg(tmp_path, "fake", host="verifier-01")
    record(fake, "drill", {"target": "tos-db", "status": "pass"}, key=keys.load_or_create(host.state_dir))
    path = str(Ledger(fake.state_dir).path)
    ring = _hosts_keyring(tmp_path / "ring.yaml", _pub(host), _pub(verifier))
    code, doc = cli("evidence", "verify", path, "--keyring", str(ring))
    kid = keys.fingerprint(keys.read_public(_pub(host)))
    assert code == 1 and f"record 1: claims host verifier-01 but is signed by key {kid} of role backup-host, " \
                          f"which the keyring binds to host(s) tos-01" in doc["problems"]
    code, doc = cli("evidence", "verify", path, "--public-key", str(_pub(host)))
    assert code == 0  # a key alone cannot tell whose it is: that is what the keyring's hosts are for


def test_keyring_hosts_leave_legitimate_ledgers_clean_and_bind_rotated_keys(roles, rotated, tmp_path):
    host, verifier = roles
    ring = _hosts_keyring(tmp_path / "ring.yaml", _pub(host), _pub(verifier))
    for cfg in (host, verifier):
        report = verify_lines(_lines(cfg), [], keyring=keyring.load(ring))
        assert not [p for p in report.problems if "claims host" in p.message], report.problems
        assert not report.notes
    cfg, first, _ = rotated  # tos-01 rotated its key: the new key inherits the first key's role and hosts
    first_pem = tmp_path / "first.pub"
    first_pem.write_bytes(keys.public_pem(first))
    ring = _hosts_keyring(tmp_path / "rot.yaml", first_pem, _pub(verifier))
    report = verify_lines(_lines(cfg), [], keyring=keyring.load(ring))
    assert report.ok, report.problems
    ring = _hosts_keyring(tmp_path / "elsewhere.yaml", first_pem, _pub(verifier), host_hosts="[tos-02]")
    report = verify_lines(_lines(cfg), [], keyring=keyring.load(ring))
    assert [p.seq for p in report.problems] == [1]
    assert "binds to host(s) tos-02 (and 5 later record(s) for tos-01)" in report.problems[0].message


def test_a_keyring_without_hosts_binds_each_key_by_its_first_record_and_says_so(roles, tmp_path):
    host, verifier = roles
    ring = _keyring(tmp_path / "ring.yaml", _pub(host))
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    kid = keys.fingerprint(keys.read_public(_pub(host)))
    assert code == 0 and doc["notes"] == [
        f"keyring role backup-host names no hosts: key {kid} is bound to host tos-01, the host of the first "
        f"record it signed (seq 1); add hosts: [...] to the role to pin it"]
    lines = _lines(host)  # the host appends a record in the verifier's name, signed with its own key
    forged = record_format.build(3, record_format.line_hash(lines[-1]), "verifier-01", "backup", {"target": "x"},
                                 keys.load_or_create(host.state_dir))
    Ledger(host.state_dir).path.write_bytes(b"".join(l + b"\n" for l in lines + [forged]))
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 1 and doc["problems"] == ["record 3: claims host verifier-01 in a ledger of host tos-01"]


def test_bad_keyring_hosts_is_a_usage_error_naming_the_field(roles, tmp_path):
    host, _ = roles
    ring = tmp_path / "ring.yaml"
    ring.write_text(f"roles:\n  backup-host:\n    public_key: {_pub(host)}\n    hosts: tos-01\n")
    code, doc = cli("evidence", "verify", str(Ledger(host.state_dir).path), "--keyring", str(ring))
    assert code == 2 and "roles.backup-host.hosts: expected a list of host names" in doc["error"]
