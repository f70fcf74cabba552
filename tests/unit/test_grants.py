"""The grant judgement (backupd.storage.grants): SeaweedFS identities and AWS policies, read from the store's
documents rather than probed with the audited host's keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupd.storage import grants

ROOT = Path(__file__).resolve().parents[2]
B = "backupd-tos"
SCOPE = grants.Scope(bucket=B, restic_paths=("restic",), writers={"writer": ("tos-01",)},
                     verifiers={"verifier": ("verifier-01",)})
CONFINED = ["Read:backupd-tos", "List:backupd-tos", "Write:backupd-tos/restic/*",
            "Write:backupd-tos/evidence/tos-01/*", "Write:backupd-tos/.backupd-incident/tos-01.json",
            "Tagging:backupd-tos/restic/*", "PutObjectRetention:backupd-tos/evidence/tos-01/*"]


def rules(identities: dict, scope: grants.Scope = SCOPE) -> set[tuple[str, str]]:
    return {(f.identity, f.rule) for f in grants.judge_seaweed(identities, scope)}


@pytest.mark.parametrize("actions, expected", [
    (["Read:backupd-tos", "List:backupd-tos", "Write:backupd-tos/*", "Tagging:backupd-tos/*"], {"write_reach"}),
    (CONFINED, set()),
    (["Admin"], {"admin"}),
    (["Admin:backupd-tos"], {"admin"}),
    (["Admin:backupd-tos/restic/*"], {"admin"}),
    (["Write"], {"bucket_write"}),
    (["Write:backupd-tos"], {"bucket_write"}),
    (["Write:backupd-t*"], {"bucket_write"}),
    (["PutBucketObjectLockConfiguration:backupd-tos"], {"bucket_write"}),
    (["PutObjectRetention"], {"retention"}),
    (["PutObjectRetention:backupd-tos/*"], {"retention"}),
    (["PutObjectRetention:backupd-tos/evidence/tos-01/*"], set()),
    (["BypassGovernanceRetention:backupd-tos/evidence/tos-01/*"], {"bypass_governance"}),
    (["Write:backupd-tos/evidence/*"], {"write_reach"}),  # every host's evidence, the verifier's too
    (["Write:backupd-tos/evidence/tos-01*"], {"write_reach"}),  # also evidence/tos-010/
    (["Write:backupd-tos/evidence/verifier-01/*"], {"write_reach"}),
    (["Write:other-bucket/*", "Admin:other-bucket"], set()),  # another bucket: not this scope
    (["Write:backupd-tos/evidence/x"], set()),  # an exact key grant never matches in SeaweedFS
])
def test_a_writer_is_judged_by_each_grant(actions, expected):
    assert {r for _, r in rules({"writer": actions})} == expected


def test_the_old_broad_writer_is_named_with_its_grant_and_the_verifiers_prefix():
    (finding,) = grants.judge_seaweed({"writer": ["Write:backupd-tos/*"]}, SCOPE)
    assert finding.identity == "writer" and finding.grant == "Write:backupd-tos/*"
    assert "evidence/verifier-01/" in finding.text() and "version deletes" in finding.text()


def test_other_identities_are_confined_to_their_own_area_and_privileged_ones_are_not_judged():
    doc = {"admin": ["Admin", "Write"], "maintainer": ["Write:backupd-tos/*", "PutObjectRetention"],
           "auditor": ["Read:backupd-tos", "List:backupd-tos"],
           "canary": ["Read:backupd-tos/.backupd-canary/*", "Write:backupd-tos/.backupd-canary/*"],
           "verifier": ["Write:backupd-tos/evidence/verifier-01/*"]}
    assert rules(doc) == set()
    assert rules({"auditor": ["Write:backupd-tos/restic/*"]}) == {("auditor", "write_reach")}
    assert rules({"canary": ["Write:backupd-tos/*"]}) == {("canary", "write_reach")}
    assert rules({"verifier": ["Write:backupd-tos/evidence/tos-01/*"]}) == {("verifier", "write_reach")}
    shared = grants.Scope(bucket=B, writers={"writer": ("tos-01", "tos-02")})
    assert ("writer", "shared_identity") in rules({"writer": []}, shared)


@pytest.mark.parametrize("text, field", [
    ("{", "not JSON"), ("[]", "identities"), ('{"identities": [{"actions": []}]}', "identities[0].name"),
    ('{"identities": [{"name": "w", "actions": "Write"}]}', "identities[0].actions"),
    ('{"identities": [{"name": "w"}, {"name": "w"}]}', "identities[1].name"),
    ('{"identities": [{"name": "w", "credentials": 5}]}', "identities[0].credentials"),
    ('{"identities": [{"name": "w", "credentials": {"secretKey": "s"}}]}', "identities[0].credentials"),
])
def test_a_malformed_identities_file_names_the_file_and_field(text, field):
    with pytest.raises(grants.GrantsError, match=re.escape(f"ids.json: {field}") if field != "not JSON"
                       else "ids.json: not JSON"):
        grants.parse_seaweed(text, "ids.json")


def test_credentials_are_noticed_but_never_echoed():
    doc = {"identities": [{"name": "w", "credentials": [{"accessKey": "AK", "secretKey": "SECRET"}],
                           "actions": ["Write:b/*"]}]}
    ids, secrets = grants.parse_seaweed(json.dumps(doc), "f")
    assert secrets and ids == {"w": ["Write:b/*"]}
    assert all("SECRET" not in f.text() for f in grants.judge_seaweed(ids, grants.Scope(bucket="b")))


# --- a reference of SeaweedFS' canDo, to check the judgement never passes a grant that reaches too far ----

def can_do(actions: list[str], action: str, bucket: str, key: str) -> bool:
    """SeaweedFS (weed/s3api/auth_credentials.go) Identity.canDo, for object keys."""
    if "Admin" in actions or action in actions:
        return True
    target, admin = f"{action}:{bucket}/{key}", f"Admin:{bucket}/{key}"
    for act in actions:
        if act.endswith("*"):
            if target.startswith(act[:-1]) or admin.startswith(act[:-1]):
                return True
        elif act in (f"{action}:{bucket}", f"Admin:{bucket}"):
            return True
    return False


PROBES = ["restic/data/00/pack", "evidence/tos-01/records/1.json", "evidence/tos-010/records/1.json",
          "evidence/tos-02/records/1.json", "evidence/verifier-01/records/1.json", ".backupd-incident/tos-02.json",
          ".backupd-incident/tos-01.json", "locks/x", "evidence/tos-01-keys.pub"]
PIECES = ["Write", "Admin", "Read", "PutObjectRetention"]
RESOURCES = ["", ":backupd-tos", ":backupd-tos/*", ":backupd-*", ":backupd-tos/restic/*", ":backupd-tos/evidence/*",
             ":backupd-tos/evidence/tos-01/*", ":backupd-tos/evidence/tos-01*", ":backupd-tos/.backupd-incident/*",
             ":backupd-tos/evidence/tos-0*", ":other/*", ":backupd-tos/r*"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PIECES), st.sampled_from(RESOURCES)), max_size=4))
def test_no_grant_that_writes_outside_the_writers_area_passes(pairs):
    actions = [a + r for a, r in pairs]
    area = SCOPE.write_area("writer")
    escapes = [k for k in PROBES if can_do(actions, "Write", B, k) and not any(k.startswith(p) for p in area)]
    if escapes:
        assert grants.judge_seaweed({"writer": actions}, SCOPE), (actions, escapes)


# --- the shipped templates, filled in for one host --------------------------------------------------------

def fill(text: str, host: str = "tos-01") -> str:
    text = text.replace("@BUCKET@", B).replace("@PREFIX@", "restic").replace("@VERIFIER_HOST@", "verifier-01")
    text = re.sub(r"@[A-Z_]*HOST@", host, text)
    return re.sub(r"@[A-Z_]+@", "placeholder", text)


def template_scope(names) -> grants.Scope:
    writers = {n: ("tos-01",) for n in names if n.startswith("writer")}
    return grants.Scope(bucket=B, restic_paths=("restic",), writers=writers,
                        verifiers={n: ("verifier-01",) for n in names if n.startswith("verifier")})


def test_the_shipped_seaweedfs_template_passes_and_the_old_broad_writer_fails():
    text = fill((ROOT / "deploy/seaweedfs/s3-identities.example.json").read_text())
    ids, _ = grants.parse_seaweed(text, "s3-identities.example.json")
    scope = template_scope(ids)
    assert scope.writers, ids
    assert grants.judge_seaweed(ids, scope) == []
    broad = {**ids, **{w: [f"Read:{B}", f"List:{B}", f"Write:{B}/*", f"Tagging:{B}/*"] for w in scope.writers}}
    assert {f.rule for f in grants.judge_seaweed(broad, scope)} == {"write_reach"}


# --- AWS ---------------------------------------------------------------------------------------------------

def aws(policy: dict | str, name: str = "writer", scope: grants.Scope = SCOPE) -> set[str]:
    text = policy if isinstance(policy, str) else json.dumps(policy)
    return {f.rule for f in grants.judge_aws({name: grants.parse_policy(text, "p.json")}, scope)}


def allow(actions, resource, effect="Allow", **extra):
    return {"Effect": effect, "Action": actions, "Resource": resource, **extra}


DENY = allow(["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention"],
             f"arn:aws:s3:::{B}/*", "Deny")
WRITES = allow(["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
               [f"arn:aws:s3:::{B}/restic/*", f"arn:aws:s3:::{B}/evidence/tos-01/*"])


@pytest.mark.parametrize("statements, expected", [
    ([WRITES, DENY], set()),
    ([WRITES], {"missing_deny"}),
    ([allow("s3:PutObject", f"arn:aws:s3:::{B}/*"), DENY], {"write_reach"}),
    ([allow("s3:*", f"arn:aws:s3:::{B}/*"), DENY], {"write_reach", "retention"}),  # PutObjectLegalHold too
    ([WRITES, allow("s3:*", f"arn:aws:s3:::{B}"), DENY], {"bucket_write"}),
    ([WRITES, allow("s3:PutObjectRetention", f"arn:aws:s3:::{B}/*"),
      allow(["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"], f"arn:aws:s3:::{B}/*", "Deny")],
     {"retention", "missing_deny"}),
    ([WRITES, allow("s3:DeleteObjectVersion", f"arn:aws:s3:::{B}/restic/*")], {"delete_version", "missing_deny"}),
    ([WRITES, DENY, allow("s3:DeleteObjectVersion", f"arn:aws:s3:::{B}/*")], set()),  # the deny wins
    ([WRITES, {**DENY, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}], {"missing_deny"}),
    ([WRITES, allow(["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"], f"arn:aws:s3:::{B}/*", "Deny"),
      {"Effect": "Deny", "Action": "s3:PutObjectRetention", "NotResource": f"arn:aws:s3:::{B}/evidence/tos-01/*"},
      allow("s3:PutObjectRetention", f"arn:aws:s3:::{B}/evidence/tos-01/*")], set()),
    ([allow("s3:PutObject", f"arn:aws:s3:::{B}/evidence/*"), DENY], {"write_reach"}),
])
def test_an_aws_writer_policy_is_judged(statements, expected):
    assert aws({"Statement": statements}) == expected


def test_a_bucket_policy_names_its_principals():
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:user/auditor"},
                             "Action": "s3:DeleteObjectVersion", "Resource": f"arn:aws:s3:::{B}/*"}]}
    statements = grants.parse_policy(json.dumps(policy), "bp", bucket_policy=True)
    found = grants.judge_aws({"auditor": statements, "writer": []}, SCOPE)
    assert {(f.identity, f.rule) for f in found} >= {("auditor", "delete_version")}
    assert not any(f.identity == "writer" and f.rule != "missing_deny" for f in found)
    with pytest.raises(grants.GrantsError, match=r"bp: Statement\[0\]\.Principal"):
        grants.parse_policy(json.dumps({"Statement": [allow("s3:*", "*")]}), "bp", bucket_policy=True)


@pytest.mark.parametrize("doc, field", [
    ({"Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}, r"Statement\[0\]\.Effect"),
    ({"Statement": [{"Effect": "Allow", "Action": 3, "Resource": "*"}]}, r"Statement\[0\]\.Action"),
    ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, r"Statement\[0\]: needs exactly one"),
    ({"Version": "2012-10-17"}, "Statement"),
])
def test_a_malformed_policy_names_the_file_and_field(doc, field):
    with pytest.raises(grants.GrantsError, match=f"p.json: {field}"):
        grants.parse_policy(json.dumps(doc), "p.json")


def test_the_shipped_iam_templates_pass_for_their_identity():
    for name, scope_name in (("writer", "writer"), ("verifier", "verifier"), ("auditor", "auditor"),
                             ("canary", "canary")):
        text = fill((ROOT / f"deploy/iam/{name}.json").read_text())
        assert aws(text, scope_name) == set(), name


# --- the audit's wiring (backupd.actions.grants_audit) -------------------------------------------------------

class FakeAuditor:
    """get_bucket_policy only: a policy document, or the error code S3 would answer."""

    def __init__(self, policy: dict | None = None, code: str = "NoSuchBucketPolicy"):
        self.policy, self.code = policy, code

    def get_bucket_policy(self, Bucket):
        from botocore.exceptions import ClientError
        if self.policy is None:
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "GetBucketPolicy")
        return {"Policy": json.dumps(self.policy)}


def wiring(tmp_path, grants_section: dict, role: str = "verifier"):
    from types import SimpleNamespace

    from backupd.config.loader import Config
    from backupd.policy.schema import S3Destination
    cfg = Config(path=tmp_path / "backupd.yaml", host="verifier-01", role=role, hosts=["tos-01"],
                 grants=grants_section)
    dest = S3Destination(kind="s3", endpoint="http://s3.test", bucket=B, path="restic", object_lock=True,
                         credentials_file=Path("s3-writer.env"), password_file=Path("restic-password"))
    return cfg, SimpleNamespace(destinations={"worm": dest}), dest


def test_the_audit_judges_the_handed_identities_file_and_names_the_writer(tmp_path):
    from backupd.actions import grants_audit
    (tmp_path / "ids.json").write_text(json.dumps({"identities": [
        {"name": "writer", "actions": [f"Write:{B}/*"]},
        {"name": "verifier", "actions": [f"Write:{B}/evidence/verifier-01/*"]}]}))
    cfg, policy_set, dest = wiring(tmp_path, {"seaweedfs_identities": "ids.json"})
    checks = grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor())
    (bad,) = [c for c in checks if not c.ok]
    assert bad.name == "grants_write_reach:writer" and bad.severity == "error" and f"Write:{B}/*" in bad.detail


def test_a_store_that_exposes_nothing_is_not_checked_and_a_bucket_policy_is_judged(tmp_path):
    from backupd.actions import grants_audit
    cfg, policy_set, dest = wiring(tmp_path, {})
    (check,) = grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor())
    assert check.name == "grants" and not check.ok and check.severity == "warning" and "not checked" in check.detail
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:user/writer"},
                             "Action": "s3:DeleteObjectVersion", "Resource": f"arn:aws:s3:::{B}/*"}]}
    names = {c.name for c in grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor(policy))
             if not c.ok and c.severity == "error"}
    assert "grants_delete_version:writer" in names
    assert "grants_missing_deny:writer" not in names  # its own IAM policy was not handed over: not judged
    (tmp_path / "writer.json").write_text(json.dumps({"Statement": [WRITES]}))
    cfg, _, _ = wiring(tmp_path, {"iam_policies": {"writer": "writer.json"}})
    names = {c.name for c in grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor())
             if not c.ok and c.severity == "error"}
    assert names == {"grants_missing_deny:writer"}
    garbage = {c.name for c in grants_audit.checks(grants_audit.load(cfg), policy_set, dest,
                                                   FakeAuditor({"Statement": [{"Effect": 1}]}))}
    assert "grants_bucket_policy" in garbage  # attacker input from the store: a finding, never a traceback


@pytest.mark.parametrize("section, text, expected", [
    ({"seaweedfs_identities": "ids.json"}, "{not json", r"grants: .*ids.json: not JSON"),
    ({"seaweedfs_identities": "ids.json"}, '{"identities": [{"name": 3}]}', r"ids.json: identities\[0\]\.name"),
    ({"seaweedfs_identities": "missing.json"}, None, r"grants.seaweedfs_identities: cannot read .*missing.json"),
    ({"iam_policies": {"writer": "ids.json"}}, '{"Statement": 1}', r"ids.json: Statement"),
    ({"writers": {"tos-01": 5}}, None, r"grants.writers"),
])
def test_a_bad_grants_section_or_document_is_a_config_error_naming_it(tmp_path, section, text, expected):
    from backupd.actions import grants_audit
    from backupd.errors import ConfigError
    if text is not None:
        (tmp_path / "ids.json").write_text(text)
    cfg, _, _ = wiring(tmp_path, section)
    with pytest.raises(ConfigError, match=expected):
        grants_audit.load(cfg)


def test_many_grants_breaking_one_rule_are_one_check_naming_them():
    from backupd.actions import grants_audit
    many = [f"Write:{B}/{c}*" for c in "abcdefghijklmnop"]
    (check,) = grants_audit._to_checks(grants.judge_seaweed({"writer": many}, SCOPE))
    assert check.name == "grants_write_reach:writer" and "and 13 more grants" in check.detail
    assert f"Write:{B}/p*" not in check.detail and check.detail.endswith(", ...)")


@pytest.mark.parametrize("role", ["backup", "verifier"])
def test_the_identities_file_storage_init_prints_passes_without_naming_the_writers(tmp_path, role):
    """storage init names the writer `writer-<host>`: handed over as printed (no grants.writers), it passes
    (a backup host does not know the verifier's host: it names it in grants.verifiers)."""
    from backupd.actions import grants_audit, storage_init
    doc = storage_init.identity_policies(B, "restic", "tos-01", "verifier-01")["seaweedfs"]
    for identity in doc["identities"]:
        identity.pop("credentials")
    (tmp_path / "ids.json").write_text(json.dumps(doc))
    section = {"seaweedfs_identities": "ids.json"}
    cfg, policy_set, dest = wiring(tmp_path, section, role)
    if role == "backup":
        cfg, _, _ = wiring(tmp_path, {**section, "verifiers": {"verifier-01": "verifier"}}, role)
        cfg.host = "tos-01"
    found = [c for c in grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor()) if not c.ok]
    assert found == [], found


def test_a_bucket_policy_judges_only_identities_it_names_or_all_and_warns_once_about_unseen_iam(tmp_path):
    """Default writer names that exist nowhere are not judged (no shared_identity for a `writer` nobody has);
    the writers whose IAM policies were not handed over are named in one warning."""
    from backupd.actions import grants_audit
    cfg, policy_set, dest = wiring(tmp_path, {})
    cfg.hosts = ["tos-01", "tos-02"]
    policy = {"Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:user/auditor"},
                             "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{B}/*"}]}
    found = [c for c in grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor(policy))
             if not c.ok]
    assert [c.name for c in found] == ["grants_partial"], found
    assert "writer-tos-01" in found[0].detail and "writer-tos-02" in found[0].detail


@pytest.mark.parametrize("role, severity", [("backup", "info"), ("verifier", "warning")])
def test_no_grants_is_an_info_line_on_a_backup_host_and_a_warning_on_the_verifier(tmp_path, role, severity):
    """A backup host proves its own writer with the probes; only the verifier, which has no writer keys, relies
    on the grants to check the writer, so only there does `--strict` fail on "not checked"."""
    from backupd.actions import grants_audit
    from backupd.commands.storage import exit_for
    cfg, policy_set, dest = wiring(tmp_path, {}, role)
    (check,) = grants_audit.checks(grants_audit.load(cfg), policy_set, dest, FakeAuditor())
    assert check.name == "grants" and not check.ok and check.severity == severity
    result = [{"status": "ok", "checks": [check.to_dict()]}]
    assert exit_for(result, strict=True) == (0 if role == "backup" else 1)
