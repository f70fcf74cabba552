"""The shipped identity templates grant each role exactly what the code does with its keys (issue 22, item 8).

Each role's operations run against moto through backupd's own functions; a botocore hook records every S3 call
(operation, bucket, key or prefix, parameters). The calls map to IAM actions on ARNs and to SeaweedFS
`Action:bucket/key` targets, and the templates, filled in by `storage init`'s identity_policies, must allow every
one of them (nothing missing) and every grant must serve at least one (nothing more). restic's own calls are not
boto3's: RESTIC declares them in one place. Calls a role must be refused (the audit's writer probes, writes under
another host's prefix) must be refused by both templates.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from backupd.actions import keys as keys_action
from backupd.actions.storage_init import IDENTITIES, identity_policies
from backupd.config.loader import Config
from backupd.evidence import keys, mirror, record
from backupd.evidence.ledger import evidence_dir
from backupd.storage import canary, confinement, escrow_copies, evidence_objects, extend, freeze, lockconfig, readback

BUCKET, PATH, HOST, VERIFIER = "backupd-tos", "restic", "tos-01", "verifier-01"
OTHER = "tos-02"  # another backup host in the same bucket
NOW = datetime.now(timezone.utc)
YEAR = timedelta(days=366)

#: What restic does with a repository at PATH (not boto3, so declared): list, read, write, delete (restic's
#: documented S3 needs; `--no-lock` readers only list and read). The region comes from AWS_DEFAULT_REGION,
#: so restic never asks for the bucket location.
RESTIC_RW = [("ListObjectsV2", {"Prefix": f"{PATH}/"}), ("HeadObject", {"Key": f"{PATH}/config"}),
             ("GetObject", {"Key": f"{PATH}/config"}), ("PutObject", {"Key": f"{PATH}/data/00/00aa"}),
             ("DeleteObject", {"Key": f"{PATH}/locks/0011"})]
RESTIC_READ = RESTIC_RW[:3]
#: `restic init` (backupd's first backup to a destination) asks whether the bucket exists (HeadBucket): AWS
#: allows it with s3:ListBucket, SeaweedFS only with `Read:<bucket>`, which has no bucket-only form.
RESTIC_INIT = [("HeadBucket", {})]


def _recorded(s3, calls: list):
    def hook(params, model, **_):
        calls.append((model.name, dict(params)))
    s3.meta.events.register("before-parameter-build.s3", hook)
    return s3


@pytest.fixture
def bucket():
    with mock_aws():
        admin = boto3.client("s3", region_name="us-east-1")
        admin.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        admin.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1}}})
        yield admin


def _client(calls: list):
    return _recorded(boto3.client("s3", region_name="us-east-1"), calls)


def _mirror_ops(s3, tmp_path, host: str, retention: timedelta = YEAR) -> None:
    """What a host's evidence mirror does: probe before an append, push records, keys and a checkpoint."""
    cfg = Config(path=None, state_dir=tmp_path / host, host=host)
    for i in range(2):
        record(cfg, "backup", {"target": f"t{i}"})
    dest = SimpleNamespace(bucket=BUCKET)
    mirror.probe(mirror.Remote("m", dest, s3, host), evidence_dir(cfg.state_dir), 3)
    mirror.push_pending(cfg.state_dir, dest, s3, retention)
    mirror.checkpoint_if_due(cfg.state_dir, dest, s3, keys.load_or_create(cfg.state_dir), timedelta(days=1),
                             force=True, retention=retention)


def _marker() -> dict:
    return {"id": "INC-1", "state": "open", "host": HOST, "started": NOW.isoformat()}


def _seed(tmp_path) -> None:
    """A bucket as the other roles find it: restic data, a host's evidence, a marker, an escrow copy."""
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_object(Bucket=BUCKET, Key=f"{PATH}/data/ab", Body=b"x")
    s3.put_object(Bucket=BUCKET, Key=f"{PATH}/.backupd-escrow/worm-primary.json", Body=b"{}")
    _mirror_ops(s3, tmp_path / "seed", HOST, timedelta(days=2))  # locks the maintainer must extend
    freeze.write(s3, BUCKET, HOST, _marker(), NOW + timedelta(days=2))


def writer_ops(tmp_path, monkeypatch) -> tuple[list, list]:
    """(calls the writer makes, calls it must be refused)."""
    calls, refused = [], []
    s3 = _client(calls)
    _mirror_ops(s3, tmp_path, HOST)
    freeze.write(s3, BUCKET, HOST, _marker(), NOW + YEAR)  # incident start / end
    freeze.open_incidents(s3, BUCKET)  # the forget guard
    dest = SimpleNamespace(bucket=BUCKET, path=PATH)
    monkeypatch.setattr(keys_action, "s3_client", lambda _dest: s3)
    monkeypatch.setattr(keys_action, "S3Destination", SimpleNamespace)
    keys_action._mirror(dest, "worm-primary", {"sealed": "x"}, NOW + YEAR)  # keys escrow
    key = keys_action._escrow_key(dest, "worm-primary")
    for copy in escrow_copies.copies(s3, BUCKET, key, NOW)[0]:  # keys recover
        escrow_copies.read(s3, BUCKET, key, copy)
    bad = _client(refused)
    auditor = boto3.client("s3", region_name="us-east-1")
    canary.writer_probes(bad, auditor, BUCKET, lockconfig.read_lock_config(auditor, BUCKET))
    confinement.confinement_probe(bad, BUCKET, HOST)
    bad.put_object(Bucket=BUCKET, Key=mirror.record_key(VERIFIER, 7), Body=b"x")  # the forged-record case
    bad.put_object(Bucket=BUCKET, Key=f"evidence/{VERIFIER}/evidence-ed25519.pub", Body=b"x")  # a planted key
    bad.put_object(Bucket=BUCKET, Key=freeze.marker_key(OTHER), Body=b"x")
    bad.put_object(Bucket=BUCKET, Key=f"{PATH}2/data/x", Body=b"x")  # a sibling path is not this repository
    bad.put_object(Bucket=BUCKET, Key="evidence/tos-011/records/000000000001.json", Body=b"x")
    return [("restic", p) for p in RESTIC_INIT + RESTIC_RW] + calls, refused


def verifier_ops(tmp_path, monkeypatch) -> tuple[list, list]:
    calls, refused = [], []
    _mirror_ops(_client(calls), tmp_path, VERIFIER)
    bad = _client(refused)
    bad.put_object(Bucket=BUCKET, Key=mirror.record_key(HOST, 1), Body=b"x")
    bad.put_object(Bucket=BUCKET, Key=f"{PATH}/data/x", Body=b"x")
    return calls, refused


def maintainer_ops(tmp_path, monkeypatch) -> tuple[list, list]:
    calls, refused = [], []
    _seed(tmp_path)
    s3 = _client(calls)
    freeze.open_incidents(s3, BUCKET)  # the prune guard
    extend.extend(s3, BUCKET, PATH, timedelta(weeks=12), NOW)
    extend.extend_evidence(s3, BUCKET, evidence_objects.prefixes(PATH, mirror=True), YEAR, NOW)
    bad = _client(refused)
    bad.put_object(Bucket=BUCKET, Key=mirror.record_key(VERIFIER, 7), Body=b"x")
    bad.put_object(Bucket=BUCKET, Key=freeze.marker_key(HOST), Body=b"x")
    return [("restic", p) for p in RESTIC_RW] + calls, refused


def auditor_ops(tmp_path, monkeypatch) -> tuple[list, list]:
    calls, refused = [], []
    _seed(tmp_path)
    s3 = _client(calls)
    lockconfig.versioning_check(s3, BUCKET)
    config = lockconfig.read_lock_config(s3, BUCKET)
    lockconfig.read_lifecycle(s3, BUCKET)
    canary.writer_probes(_client(refused), s3, BUCKET, config)  # the reader side of the writer probes
    readback.readback(s3, BUCKET, PATH, None, timedelta(weeks=6), NOW)
    readback.evidence_readback(s3, BUCKET, evidence_objects.prefixes(PATH, mirror=True), None, YEAR, NOW)
    mirror.pull(s3, BUCKET, tmp_path / "pulled")  # evidence pull --all-hosts
    freeze.open_incidents(s3, BUCKET)
    refused.clear()  # the writer probes' writes are the writer's, not the auditor's
    _client(refused).put_object(Bucket=BUCKET, Key=mirror.record_key(HOST, 9), Body=b"x")
    return [("restic", p) for p in RESTIC_READ] + calls, refused


def canary_ops(tmp_path, monkeypatch) -> tuple[list, list]:
    calls, refused = [], []
    canary.delete_canary(_client(calls), BUCKET, canary.canary_key(HOST))
    _client(refused).put_object(Bucket=BUCKET, Key=mirror.record_key(HOST, 9), Body=b"x")
    return calls, refused


ROLES = {"writer": writer_ops, "verifier": verifier_ops, "maintainer": maintainer_ops, "auditor": auditor_ops,
         "canary": canary_ops}
SEAWEED_NAMES = {"writer": f"writer-{HOST}"}

# --- what a call needs -------------------------------------------------------------------------------------

_BUCKET_READS = {"GetBucketVersioning": "s3:GetBucketVersioning",
                 "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
                 "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
                 "GetBucketPolicy": "s3:GetBucketPolicy"}
_BUCKET_WRITES = {"PutBucketVersioning": "s3:PutBucketVersioning",
                  "PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
                  "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
                  "DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
                  "PutBucketPolicy": "s3:PutBucketPolicy", "DeleteBucketPolicy": "s3:DeleteBucketPolicy"}


def aws_needs(op: str, p: dict) -> list[tuple[str, str]]:
    """(IAM action, ARN) pairs one call needs. A HEAD of a version reads its lock (s3:GetObjectRetention);
    a plain HEAD asks whether the key exists, which AWS answers 404 (not 403) only with s3:ListBucket."""
    b = f"arn:aws:s3:::{BUCKET}"
    o, versioned = f"{b}/{p.get('Key', '')}", "VersionId" in p
    if op == "PutObject":
        return [("s3:PutObject", o)] + ([("s3:PutObjectRetention", o)] if "ObjectLockMode" in p else [])
    if op == "GetObject":
        return [("s3:GetObjectVersion" if versioned else "s3:GetObject", o)]
    if op == "HeadObject":
        return ([("s3:GetObjectVersion", o), ("s3:GetObjectRetention", o)] if versioned
                else [("s3:GetObject", o), ("s3:ListBucket", b)])
    if op == "DeleteObject":
        return [("s3:DeleteObjectVersion" if versioned else "s3:DeleteObject", o)]
    if op in ("ListObjects", "ListObjectsV2", "HeadBucket"):
        return [("s3:ListBucket", b)]
    if op == "ListObjectVersions":
        return [("s3:ListBucketVersions", b)]
    if op in ("PutObjectRetention", "GetObjectRetention"):
        return [(f"s3:{op}", o)]
    if op in _BUCKET_READS or op in _BUCKET_WRITES:
        return [({**_BUCKET_READS, **_BUCKET_WRITES}[op], b)]
    raise AssertionError(f"unmapped S3 operation {op}: add it to aws_needs and seaweed_needs")


def seaweed_needs(op: str, p: dict) -> list[tuple[str, str]]:
    """(SeaweedFS action, target) pairs: target is bucket/key, bucket/prefix for listings, bucket for bucket calls."""
    o = f"{BUCKET}/{p.get('Key', '')}"
    if op == "PutObject":
        return [("Write", o)] + ([("PutObjectRetention", o)] if "ObjectLockMode" in p else [])
    if op in ("GetObject", "HeadObject"):
        return [("Read", o)]
    if op == "DeleteObject":
        return [("Write", o)]
    if op in ("ListObjects", "ListObjectsV2", "ListObjectVersions"):
        return [("List", f"{BUCKET}/{p['Prefix']}" if p.get("Prefix") else BUCKET)]
    if op == "PutObjectRetention":
        return [("PutObjectRetention", o)]
    if op in _BUCKET_READS or op == "HeadBucket":
        return [("Read", BUCKET)]
    if op in _BUCKET_WRITES:
        return [("Write", BUCKET)]
    raise AssertionError(f"unmapped S3 operation {op}")


def _params(call) -> tuple[str, dict]:
    if call[0] == "restic":
        return call[1][0], {"Bucket": BUCKET, **call[1][1]}
    return call


# --- the two matchers --------------------------------------------------------------------------------------

def _list(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _applies(st: dict, action: str, arn: str) -> bool:
    if not any(fnmatchcase(action, a) for a in _list(st["Action"])):
        return False
    if "NotResource" in st:
        return not any(fnmatchcase(arn, r) for r in _list(st["NotResource"]))
    return any(fnmatchcase(arn, r) for r in _list(st["Resource"]))


def aws_allows(policy: dict, action: str, arn: str) -> bool:
    """IAM evaluation of one identity policy: an applicable Deny wins, else any applicable Allow."""
    hits = [st["Effect"] for st in policy["Statement"] if _applies(st, action, arn)]
    return "Allow" in hits and "Deny" not in hits


def _sw_grant_allows(grant: str, action: str, target: str) -> bool:
    """SeaweedFS: `Act` everywhere, `Act:bucket` the bucket and its keys, `Act:bucket/prefix*` targets starting
    so; an exact `Act:bucket/key` never matches. Admin grants every action."""
    act, _, resource = grant.partition(":")
    if act not in (action, "Admin"):
        return False
    if not resource:
        return True
    if resource.endswith("*"):
        return target.startswith(resource[:-1])
    return target.split("/", 1)[0] == resource


def seaweed_allows(actions: list[str], action: str, target: str) -> bool:
    return any(_sw_grant_allows(g, action, target) for g in actions)


# --- the test ----------------------------------------------------------------------------------------------

def _templates() -> tuple[dict, dict]:
    filled = identity_policies(BUCKET, [PATH], HOST, VERIFIER)
    seaweed = {i["name"]: i["actions"] for i in filled["seaweedfs"]["identities"]}
    return filled["aws_iam"], seaweed


def _unused_aws(policy: dict, needs: set) -> list[str]:
    out = []
    for st in policy["Statement"]:
        if st["Effect"] != "Allow":
            continue
        for action in _list(st["Action"]):
            for res in _list(st["Resource"]):
                if not any(fnmatchcase(a, action) and fnmatchcase(arn, res) for a, arn in needs):
                    out.append(f"{st.get('Sid')}: {action} on {res}")
    return out


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_template_grants_exactly_what_the_code_does(role, bucket, tmp_path, monkeypatch):
    assert set(ROLES) == set(IDENTITIES)
    calls, refused = ROLES[role](tmp_path, monkeypatch)
    iam, seaweed = _templates()
    policy, grants = iam[role], seaweed[SEAWEED_NAMES.get(role, role)]
    needs_aws = {n for c in calls for n in aws_needs(*_params(c))}
    needs_sw = {n for c in calls for n in seaweed_needs(*_params(c))}
    assert sorted(n for n in needs_aws if not aws_allows(policy, *n)) == [], f"deploy/iam/{role}.json lacks"
    assert sorted(n for n in needs_sw if not seaweed_allows(grants, *n)) == [], f"seaweedfs {role} lacks"
    assert _unused_aws(policy, needs_aws) == [], f"deploy/iam/{role}.json grants more than the code uses"
    assert [g for g in grants if not any(_sw_grant_allows(g, *n) for n in needs_sw)] == [], \
        f"seaweedfs {role} grants more than the code uses"
    assert refused, "every role has writes it must be refused"
    for op, params in refused:
        assert not all(aws_allows(policy, *n) for n in aws_needs(op, params)), (role, op, params.get("Key"))
        assert not all(seaweed_allows(grants, *n) for n in seaweed_needs(op, params)), (role, op, params.get("Key"))


def test_the_matchers_follow_the_stores_rules():
    """The matchers themselves: Deny wins over Allow; SeaweedFS prefix grants stop at the prefix, exact keys
    never match (as tried against weed 4.x)."""
    policy = {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
                            {"Effect": "Deny", "Action": ["s3:PutObject"], "NotResource": "arn:aws:s3:::b/e/h1/*"}]}
    assert aws_allows(policy, "s3:PutObject", "arn:aws:s3:::b/e/h1/x")
    assert not aws_allows(policy, "s3:PutObject", "arn:aws:s3:::b/e/h2/x")
    assert not aws_allows(policy, "s3:GetObject", "arn:aws:s3:::c/x")
    assert seaweed_allows(["Write:b/e/h1/*"], "Write", "b/e/h1/x")
    assert not seaweed_allows(["Write:b/e/h1/*"], "Write", "b/e/h10/x")
    assert not seaweed_allows(["Write:b/m/h1.json"], "Write", "b/m/h1.json")
    assert seaweed_allows(["Read:b"], "Read", "b/any") and not seaweed_allows(["Read:b/*"], "Read", "b")
