"""Offline verify: every kind of tampering is detected and the record is named (CLI exit codes too)."""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupd.cli import main
from backupd.config.loader import Config
from backupd.evidence import canonical, keys, record, record_format
from backupd.evidence.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    """A 6-record ledger and its public key file: (ledger path, public key path)."""
    cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
    for i in range(1, 7):
        record(cfg, "backup", {"target": f"t{i}", "status": "ok"})
    return Ledger(cfg.state_dir).path, cfg.state_dir / "keys" / keys.PUB_NAME


def verify(path, key=None):
    args = ["evidence", "verify", str(path), "--json"] + (["--public-key", str(key)] if key else [])
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.output)


def lines_of(path):
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path, lines):
    path.write_bytes(b"".join(l + b"\n" for l in lines))


def test_intact_ledger_exits_0(ledger):
    code, doc = verify(*ledger)
    assert code == 0 and doc["ok"] and doc["ledger"]["last_seq"] == 6


def test_one_flipped_byte_names_the_record(ledger):
    path, key = ledger
    data = bytearray(path.read_bytes())
    at = data.index(b'"t4"') + 2
    data[at] ^= 0x01  # t4 -> u4: still valid JSON and canonical
    path.write_bytes(bytes(data))
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 4
    assert any("record 4: signature does not verify" in p for p in doc["problems"])
    assert any(p.startswith("record 5: chain broken") for p in doc["problems"])


def test_whitespace_edit_is_detected(ledger):
    path, key = ledger
    lines = lines_of(path)
    lines[1] = lines[1].replace(b'","', b'", "', 1)
    write_lines(path, lines)
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 2


def test_deleted_record_is_named(ledger):
    path, key = ledger
    lines = lines_of(path)
    del lines[2]
    write_lines(path, lines)
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 3
    assert "record 3 is missing (deleted)" in doc["problems"][0]


def test_swapped_records_are_named(ledger):
    path, key = ledger
    lines = lines_of(path)
    lines[3], lines[4] = lines[4], lines[3]
    write_lines(path, lines)
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 4
    assert "record 4 is out of order" in doc["problems"][0]


def test_inserted_record_is_named(ledger):
    path, key = ledger
    lines = lines_of(path)
    lines.insert(2, lines[1])
    write_lines(path, lines)
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 2


def test_resigned_with_another_key_is_detected_against_the_pinned_key(ledger):
    path, key = ledger
    other = Ed25519PrivateKey.generate()
    prev, out = record_format.GENESIS, []
    for line in lines_of(path):
        rec = json.loads(line)
        new = record_format.build(rec["seq"], prev, rec["host"], rec["kind"], rec["data"], other, rec["time"])
        out.append(new)
        prev = record_format.line_hash(new)
    write_lines(path, out)
    (path.parent / keys.PUB_NAME).write_bytes(keys.public_pem(other.public_key()))  # attacker swaps the key too
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 1
    assert "not the trusted key" in doc["problems"][0]


def test_truncated_file_names_the_cut_record(ledger):
    path, key = ledger
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    code, doc = verify(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 6
    assert "truncated" in doc["problems"][-1]


def test_raw_ledger_without_key_is_a_usage_error(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b"")
    code, doc = verify(path)
    assert code == 2 and "--public-key" in doc["error"]


def test_not_a_key_is_a_usage_error(ledger, tmp_path):
    bad = tmp_path / "k.pem"
    bad.write_text("nope")
    code, doc = verify(ledger[0], bad)
    assert code == 2 and "not a PEM public key" in doc["error"]


# --- fast verify: the chain plus the signatures that matter; --all-signatures checks every one ---

def _rechain(path, state_dir, bad_sig_at):
    """Re-sign the ledger with its own key so that record bad_sig_at carries a wrong signature while every
    link stays intact (records after it chain to its bytes as written): only its own signature tells."""
    key = keys.load_or_create(state_dir)
    prev, out = record_format.GENESIS, []
    for line in lines_of(path):
        rec = json.loads(line)
        new = record_format.build(rec["seq"], prev, rec["host"], rec["kind"], rec["data"], key, rec["time"])
        if rec["seq"] == bad_sig_at:
            wrong = {**json.loads(new), "sig": base64.b64encode(key.sign(b"another message")).decode("ascii")}
            new = canonical.dumps(wrong)
        out.append(new)
        prev = record_format.line_hash(new)
    write_lines(path, out)


def verify_all(path, key):
    result = CliRunner().invoke(main, ["evidence", "verify", str(path), "--json", "--public-key", str(key),
                                       "--all-signatures"])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.output)


def test_wrong_signature_inside_an_intact_chain_is_caught_by_all_signatures(ledger, monkeypatch):
    from backupd.evidence import signatures

    path, key = ledger
    _rechain(path, path.parent.parent, bad_sig_at=3)
    code, doc = verify(path, key)
    assert code == 0 and doc["ledger"]["signatures_checked"] == 2  # first and head: the chain covers record 3
    monkeypatch.setattr(signatures, "CHUNK", 2)  # several chunks: the process pool runs
    code, doc = verify_all(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 3 and doc["ledger"]["signatures_checked"] == 6
    assert doc["problems"] == ["record 3: signature does not verify: the record was changed after signing"]


def test_wrong_signature_on_the_head_is_caught_by_default_verify(ledger):
    path, key = ledger
    _rechain(path, path.parent.parent, bad_sig_at=6)
    code, doc = verify(path, key)
    assert code == 1 and doc["problems"] == ["record 6: signature does not verify: the record was changed after "
                                             "signing"]


def test_wrong_signature_on_a_checkpointed_record_is_caught_by_default_verify(ledger):
    from backupd.actions import evidence_verify
    from backupd.evidence import checkpoint

    path, key = ledger
    _rechain(path, path.parent.parent, bad_sig_at=4)
    private = keys.load_or_create(path.parent.parent)
    cp = checkpoint.parse(checkpoint.build("tos-01", 4, record_format.line_hash(lines_of(path)[3]), private))
    doc = evidence_verify.verify(path, [key], checkpoints=[cp])
    assert not doc["ok"] and doc["ledger"]["first_bad_seq"] == 4
    assert doc["problems"] == ["record 4: signature does not verify: the record was changed after signing"]


def test_flipped_byte_in_the_head_names_it(ledger):
    path, key = ledger
    lines = lines_of(path)
    lines[-1] = lines[-1].replace(b'"t6"', b'"t7"')
    write_lines(path, lines)
    code, doc = verify(path, key)
    assert code == 1 and doc["problems"] == ["record 6: signature does not verify: the record was changed after "
                                             "signing"]


def test_all_signatures_names_the_tampered_record_like_default_verify(ledger, monkeypatch):
    from backupd.evidence import signatures

    path, key = ledger
    data = bytearray(path.read_bytes())
    data[data.index(b'"t4"') + 2] ^= 0x01
    path.write_bytes(bytes(data))
    monkeypatch.setattr(signatures, "CHUNK", 2)
    code, doc = verify_all(path, key)
    assert code == 1 and doc["ledger"]["first_bad_seq"] == 4
    assert doc["problems"][:2] == ["record 4: signature does not verify: the record was changed after signing",
                                   "record 5: chain broken: prev does not match the SHA-256 of the record before it"
                                   " (a record before it was changed, removed or inserted)"]


def test_escaped_host_and_kind_are_read_by_the_full_parser(tmp_path):
    cfg = Config(path=None, state_dir=tmp_path / "state", host='tos "01"')
    for kind in ("backup", 'odd\\kind', "backup"):
        record(cfg, kind, {"target": "t"})
    path, key = Ledger(cfg.state_dir).path, cfg.state_dir / "keys" / keys.PUB_NAME
    code, doc = verify(path, key)
    assert code == 0 and doc["ledger"]["hosts"] == ['tos "01"'] and doc["ledger"]["kinds"]["odd\\kind"] == 1


def test_rotation_forged_without_the_old_key_is_caught_by_default_verify(ledger):
    """An attacker with a key of his own appends a key-rotation record that claims the pinned key's id
    (proof by his key is valid) and signs it and the records after it himself: the rotation record's
    signature is checked under the old key."""
    path, key = ledger
    old = keys.read_public(key)
    mine = Ed25519PrivateKey.generate()
    old_kid, new_kid = keys.fingerprint(old), keys.fingerprint(mine.public_key())
    lines = lines_of(path)
    prev, time = record_format.line_hash(lines[-1]), "2026-11-27T00:00:00.000000Z"
    proof = mine.sign(record_format.rotation_statement(7, prev, "tos-01", time, old_kid, new_kid))
    body = {"seq": 7, "time": time, "host": "tos-01", "kind": record_format.ROTATION, "prev": prev, "kid": old_kid,
            "data": {"old_kid": old_kid, "new_kid": new_kid, "reason": "",
                     "old_public_key": keys.public_pem(old).decode(),
                     "new_public_key": keys.public_pem(mine.public_key()).decode(),
                     "new_key_signature": base64.b64encode(proof).decode()}}
    forged = canonical.dumps({**body, "sig": base64.b64encode(mine.sign(canonical.dumps(body))).decode()})
    after = record_format.build(8, record_format.line_hash(forged), "tos-01", "backup", {"target": "x"}, mine)
    write_lines(path, lines + [forged, after])
    code, doc = verify(path, key)
    assert code == 1 and doc["problems"] == ["record 7: signature does not verify: the record was changed after "
                                             "signing"]


def _append_as(path, host, key_state_dir, kind="drill", n=1):
    """n records claiming host appended to the ledger at path, signed with the key in key_state_dir."""
    key = keys.load_or_create(key_state_dir)
    lines = lines_of(path)
    for _ in range(n):
        seq = record_format.parse(lines[-1])["seq"] + 1
        lines.append(record_format.build(seq, record_format.line_hash(lines[-1]), host, kind,
                                         {"target": "tos-db", "status": "pass"}, key))
    write_lines(path, lines)


def test_a_record_for_another_host_in_a_single_host_ledger_is_flagged_with_the_public_key_alone(ledger):
    """The backup host appends a drill in the verifier's name, signed with its own key: every signature
    and link holds, but a ledger is one host's."""
    path, key = ledger
    _append_as(path, "verifier-01", path.parent.parent)
    code, doc = verify(path, key)
    assert code == 1 and doc["problems"] == ["record 7: claims host verifier-01 in a ledger of host tos-01"]
    assert doc["ledger"]["host"] == "tos-01" and doc["ledger"]["first_bad_seq"] == 7


def test_many_records_for_another_host_are_named_up_to_a_limit_then_counted(ledger):
    from backupd.evidence.verify import HOSTS_NAMED

    path, key = ledger
    _append_as(path, "verifier-01", path.parent.parent, n=HOSTS_NAMED + 5)
    code, doc = verify(path, key)
    assert code == 1 and len(doc["problems"]) == HOSTS_NAMED + 1
    assert doc["problems"][-1].startswith(f"record {7 + HOSTS_NAMED}: 5 more record(s) from here on claim a host "
                                          f"other than tos-01")


def test_a_key_rotation_keeps_the_host(ledger):
    """A rotated ledger verifies; records after the rotation in another host's name do not (a rotation
    does not hand the ledger to another host)."""
    from backupd.evidence.rotation import rotate

    path, key = ledger
    cfg = Config(path=None, state_dir=path.parent.parent, host="tos-01")
    rotate(cfg, "yearly")
    record(cfg, "backup", {"target": "after"})
    code, doc = verify(path, key)
    assert code == 0 and doc["ledger"]["hosts"] == ["tos-01"] and len(doc["ledger"]["keys"]) == 2, doc["problems"]
    record(Config(path=None, state_dir=cfg.state_dir, host="tos-02"), "backup", {"target": "renamed"})
    code, doc = verify(path, key)
    assert code == 1 and doc["problems"] == ["record 9: claims host tos-02 in a ledger of host tos-01"]


@pytest.fixture
def planted(tmp_path):
    """tos-01's mirrored evidence copied under evidence/verifier-01/ (what the shared writer grant allows):
    (s3 client, bucket, tos-01's ledger path)."""
    import boto3
    from moto import mock_aws

    from backupd.evidence import mirror

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="evidence-bkt", ObjectLockEnabledForBucket=True)
        cfg = Config(path=None, state_dir=tmp_path / "state", host="tos-01")
        for i in range(3):
            record(cfg, "backup", {"target": f"t{i}"})
        mirror.push_pending(cfg.state_dir, type("D", (), {"bucket": "evidence-bkt"})(), s3)
        for obj in s3.list_objects_v2(Bucket="evidence-bkt", Prefix="evidence/tos-01/")["Contents"]:
            body = s3.get_object(Bucket="evidence-bkt", Key=obj["Key"])["Body"].read()
            s3.put_object(Bucket="evidence-bkt", Key=obj["Key"].replace("/tos-01/", "/verifier-01/"), Body=body)
        yield s3, "evidence-bkt", Ledger(cfg.state_dir).path


def test_a_ledger_pulled_from_one_host_prefix_whose_records_claim_another_host_is_flagged(planted, tmp_path,
                                                                                          monkeypatch):
    from backupd.actions import evidence as action
    from backupd.actions import evidence_verify
    from backupd.evidence import mirror

    s3, bucket, own = planted
    monkeypatch.setattr(action, "pull_hosts", lambda *a, **k: mirror.pull(s3, bucket, tmp_path / "p"))
    monkeypatch.setattr(action, "pulled_bucket", lambda *a: bucket)
    doc = action.pull(None, None, "worm", tmp_path / "p")
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["tos-01"]["ok"] and not by_host["verifier-01"]["ok"] and not doc["ok"]
    assert by_host["verifier-01"]["problems"][0] == "record 1: claims host tos-01 in a ledger of host verifier-01"
    [got] = mirror.pull(s3, bucket, tmp_path / "q", "verifier-01")  # evidence verify --mirror --host verifier-01
    doc = evidence_verify.verify(own, mirror_copy=got)
    assert not doc["ok"] and "record 1: claims host tos-01 in a ledger of host verifier-01" in doc["problems"]
    [got] = mirror.pull(s3, bucket, tmp_path / "r", "tos-01")  # the host's own prefix: clean
    assert evidence_verify.verify(own, mirror_copy=got)["ok"]
