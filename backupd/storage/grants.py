"""Judge the S3 grants of every identity from the store's own documents, not from the audited host's keys.

Inputs are parsed documents, never live calls: a SeaweedFS `-s3.config` identities file (`parse_seaweed`)
or AWS policy documents (`parse_policy`: an IAM policy attached to one identity, or a bucket policy whose
statements name principals). `judge_seaweed` / `judge_aws` return `Finding`s for one bucket (`Scope`):

- no identity but the privileged ones (admin, maintainer) holds Admin, bucket-level Write (versioning,
  lifecycle, lock configuration, bucket policy), BypassGovernanceRetention or DeleteObjectVersion;
- PutObjectRetention only on its own evidence (its evidence prefix; for a writer also its incident marker and
  the password escrows), where COMPLIANCE lets it lengthen locks, never shorten them;
- an identity's object writes stay inside its own area: a host's writer in the restic paths, its own
  `evidence/<host>/` and its incident marker; the verifier in its own evidence prefix; the canary in
  `.backupd-canary/`; anyone else nowhere. In SeaweedFS `Write` on a key also deletes its versions, so a
  write reach beyond that area is a version-delete right over another host's evidence or backups.

Reach is over-approximated (a grant may reach at least what it is said to) and AWS denies are
under-approximated (a Deny counts only where it surely applies), so a doubt is reported, never passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from backupd.storage.canary import CANARY_PREFIX
from backupd.storage.freeze import PREFIX as INCIDENT_PREFIX

EVIDENCE_PREFIX = "evidence/"  # as backupd.evidence.mirror writes the ledger mirror
ESCROW_DIR = ".backupd-escrow"  # as backupd.actions.keys writes the sealed password escrows, in the restic path
DEFAULT_PRIVILEGED = ("admin", "maintainer")
_WILDCARDS = "*?"
#: SeaweedFS actions that act on the bucket itself when granted on it (or globally).
_SW_BUCKET_LEVEL = ("Write", "DeleteBucket", "PutBucketObjectLockConfiguration", "WriteAcp")
#: AWS bucket-level actions a non-privileged identity must never hold.
_AWS_BUCKET_LEVEL = ("s3:PutBucketVersioning", "s3:PutLifecycleConfiguration", "s3:PutBucketObjectLockConfiguration",
                     "s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket", "s3:PutBucketAcl")
_AWS_WRITE = ("s3:PutObject", "s3:DeleteObject")


class GrantsError(ValueError):
    """A grants document is malformed; the message names the file and the field (never a secret)."""


@dataclass(frozen=True)
class Finding:
    identity: str
    grant: str
    rule: str
    detail: str

    def text(self) -> str:
        return f"identity '{self.identity}': {self.grant}: {self.detail}"


@dataclass(frozen=True)
class Scope:
    """One bucket and who is who in it. writers/verifiers map identity name -> the hosts it writes for."""

    bucket: str
    restic_paths: tuple[str, ...] = ()
    writers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    verifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    canary: str | None = "canary"
    privileged: frozenset[str] = frozenset(DEFAULT_PRIVILEGED)

    def write_area(self, identity: str) -> tuple[str, ...]:
        """Key prefixes the identity may put (and, in SeaweedFS, delete versions) under."""
        area: list[str] = []
        for host in self.writers.get(identity, ()):
            area += [*(p.strip("/") + "/" for p in self.restic_paths), f"{EVIDENCE_PREFIX}{host}/",
                     f"{INCIDENT_PREFIX}{host}.json"]
        for host in self.verifiers.get(identity, ()):
            area.append(f"{EVIDENCE_PREFIX}{host}/")
        if identity == self.canary:
            area.append(CANARY_PREFIX)
        return tuple(area)

    def retention_area(self, identity: str) -> tuple[str, ...]:
        """Key prefixes where the identity may set a retention (locking its own evidence for the audit
        period): its evidence prefix, and for a writer its incident marker and the escrows."""
        area = [f"{EVIDENCE_PREFIX}{h}/" for h in self.verifiers.get(identity, ())]
        for host in self.writers.get(identity, ()):
            area += [f"{EVIDENCE_PREFIX}{host}/", f"{INCIDENT_PREFIX}{host}.json",
                     *(f"{p.strip('/')}/{ESCROW_DIR}/" for p in self.restic_paths)]
        return tuple(area)

    def known_hosts(self) -> tuple[str, ...]:
        return tuple(sorted({h for hosts in (*self.writers.values(), *self.verifiers.values()) for h in hosts}))


# --- reach: which keys of the bucket a resource pattern may touch ---------------------------------------

@dataclass(frozen=True)
class Reach:
    """Keys starting with `prefix` (exact: only the key `prefix` itself)."""

    prefix: str
    exact: bool = False

    def within(self, area: tuple[str, ...]) -> bool:
        return any(self.prefix.startswith(a) for a in area)

    def where(self) -> str:
        if self.exact:
            return self.prefix
        return "every key of the bucket" if not self.prefix else f"{self.prefix}*"


def _literal(pattern: str) -> tuple[str, bool]:
    """(the part before the first wildcard, whether there was one)."""
    cut = min((pattern.index(c) for c in _WILDCARDS if c in pattern), default=None)
    return (pattern, False) if cut is None else (pattern[:cut], True)


def _reach_of_path(path: str, bucket: str) -> Reach | None:
    """Reach in `bucket` of a `bucket/key` pattern with AWS wildcards (which span `/`)."""
    lit, wild = _literal(path)
    head = bucket + "/"
    if lit.startswith(head):
        return Reach(lit[len(head):], exact=not wild)
    if wild and head.startswith(lit):
        return Reach("")  # the wildcard may fill in the rest of the bucket name and any key
    return None


def _covers(path: str, bucket: str, prefix: str) -> bool:
    """True when the `bucket/key` pattern surely matches every key starting with prefix."""
    if path == "*":
        return True
    lit, wild = _literal(path)
    return wild and path == lit + "*" and (bucket + "/" + prefix).startswith(lit)


def _outside(reach: Reach, area: tuple[str, ...], known: tuple[str, ...], own: tuple[str, ...]) -> str:
    """Why a reach beyond `area` matters: the other hosts' evidence it covers, if any."""
    hit = [f"{EVIDENCE_PREFIX}{h}/" for h in known if h not in own
           and (f"{EVIDENCE_PREFIX}{h}/".startswith(reach.prefix) or reach.prefix.startswith(f"{EVIDENCE_PREFIX}{h}/"))]
    if not hit and EVIDENCE_PREFIX.startswith(reach.prefix) and not reach.exact:
        hit = [f"{EVIDENCE_PREFIX}<any host>/"]
    allowed = ", ".join(area) if area else "nothing"
    return (f"reaches {reach.where()}, beyond its own area ({allowed})"
            + (f", including other hosts' evidence ({', '.join(hit)})" if hit else ""))


# --- SeaweedFS --------------------------------------------------------------------------------------------

def parse_seaweed(text: str, source: str) -> tuple[dict[str, list[str]], bool]:
    """({identity: actions}, whether any identity carries credentials) of an `-s3.config` document."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GrantsError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    items = doc.get("identities") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise GrantsError(f"{source}: identities: expected a list of identities")
    out: dict[str, list[str]] = {}
    secrets = False
    for i, item in enumerate(items):
        where = f"{source}: identities[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise GrantsError(f"{where}.name: expected a non-empty string")
        actions = item.get("actions", [])
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise GrantsError(f"{where}.actions: expected a list of strings")
        if item["name"] in out:
            raise GrantsError(f"{where}.name: identity '{item['name'][:64]}' is listed twice")
        credentials = item.get("credentials") or []
        if not isinstance(credentials, list):
            raise GrantsError(f"{where}.credentials: expected a list of credentials")
        out[item["name"]] = actions
        secrets = secrets or any(isinstance(c, dict) and c.get("secretKey") for c in credentials)
    return out, secrets


def _sw_reach(resource: str, bucket: str) -> Reach | None:
    """What keys of `bucket` a SeaweedFS grant resource reaches: "" global, `b` the bucket, `p*` a prefix of
    `bucket/key` (plain string prefix, as SeaweedFS matches it); None: not this bucket."""
    if not resource or resource == bucket:
        return Reach("")
    if not resource.endswith("*"):
        return None  # an exact `Act:bucket/key` grant never matches in SeaweedFS
    prefix, head = resource[:-1], bucket + "/"
    if head.startswith(prefix):
        return Reach("")
    return Reach(prefix[len(head):]) if prefix.startswith(head) else None


def seaweed_names_bucket(identities: dict[str, list[str]], bucket: str) -> bool:
    """True when some scoped grant reaches `bucket`: the identities file describes this bucket's store."""
    return any(":" in a and _sw_reach(a.partition(":")[2], bucket) is not None
               for actions in identities.values() for a in actions)


def _sw_bucket_level(resource: str, bucket: str) -> bool:
    return not resource or resource == bucket or (resource.endswith("*") and bucket.startswith(resource[:-1]))


def judge_seaweed(identities: dict[str, list[str]], scope: Scope) -> list[Finding]:
    """Every rule each non-privileged identity breaks in scope.bucket."""
    findings: list[Finding] = []
    for name, actions in identities.items():
        if name in scope.privileged:
            continue
        for action in actions:
            findings += _sw_action(name, action, scope)
        findings += _shared_writer(name, scope)
    return findings


def _sw_action(name: str, grant: str, scope: Scope) -> list[Finding]:
    act, _, resource = grant.partition(":")
    reach = _sw_reach(resource, scope.bucket)
    if reach is None:
        return []
    own = (*scope.writers.get(name, ()), *scope.verifiers.get(name, ()))
    if act == "Admin":
        return [Finding(name, grant, "admin", "Admin: every action, on the bucket and every version")]
    if act in _SW_BUCKET_LEVEL and _sw_bucket_level(resource, scope.bucket):
        return [Finding(name, grant, "bucket_write", f"bucket-level {act}: may change versioning, lifecycle, "
                        "the Object Lock configuration or the bucket policy")]
    if act == "BypassGovernanceRetention":
        return [Finding(name, grant, "bypass_governance", "may bypass GOVERNANCE retention")]
    if act in ("PutObjectRetention", "PutObjectLegalHold") and not reach.within(scope.retention_area(name)):
        return [Finding(name, grant, "retention", f"{act} " + _outside(
            reach, scope.retention_area(name), scope.known_hosts(), own))]
    if act == "Write" and not reach.within(scope.write_area(name)):
        return [Finding(name, grant, "write_reach", "Write (puts and version deletes) "
                        + _outside(reach, scope.write_area(name), scope.known_hosts(), own))]
    return []


def _shared_writer(name: str, scope: Scope) -> list[Finding]:
    hosts = (*scope.writers.get(name, ()), *scope.verifiers.get(name, ()))
    if len(set(hosts)) < 2:
        return []
    return [Finding(name, "(identity)", "shared_identity", f"writes for several hosts ({', '.join(sorted(set(hosts)))}): "
                    "each host needs its own identity, or one can forge the other's evidence")]


# --- AWS policy documents -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...]
    not_resources: tuple[str, ...] | None
    principals: tuple[str, ...] | None  # None: the identity the policy is attached to
    conditional: bool
    sid: str

    def names(self, identity: str) -> bool:
        if self.principals is None:
            return True
        return any(p == "*" or p == identity or p.rsplit("/", 1)[-1] == identity or p.rsplit(":", 1)[-1] == identity
                   for p in self.principals)

    def acts(self, action: str) -> bool:
        low = action.lower()
        if self.not_actions is not None:
            return not any(fnmatchcase(low, a.lower()) for a in self.not_actions)
        return any(fnmatchcase(low, a.lower()) for a in self.actions)

    def label(self) -> str:
        return f"{self.effect} statement {self.sid!r}" if self.sid else f"{self.effect} statement"


def _strings(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GrantsError(f"{where}: expected a string or a list of strings")


def _principals(value, where: str) -> tuple[str, ...]:
    if value == "*":
        return ("*",)
    if isinstance(value, dict):
        return tuple(p for v in value.values() for p in _strings(v, where))
    raise GrantsError(f"{where}: expected \"*\" or a mapping such as {{\"AWS\": [ARN, ...]}}")


def parse_policy(text: str, source: str, bucket_policy: bool = False) -> list[Statement]:
    """The statements of an IAM policy (bucket_policy: a bucket policy, whose statements name principals)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise GrantsError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    raw = doc.get("Statement") if isinstance(doc, dict) else None
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list):
        raise GrantsError(f"{source}: Statement: expected a statement or a list of statements")
    return [_statement(s, f"{source}: Statement[{i}]", bucket_policy) for i, s in enumerate(raw)]


def _statement(s, where: str, bucket_policy: bool) -> Statement:
    if not isinstance(s, dict):
        raise GrantsError(f"{where}: expected a mapping")
    if s.get("Effect") not in ("Allow", "Deny"):
        raise GrantsError(f"{where}.Effect: expected Allow or Deny")
    if ("Action" in s) == ("NotAction" in s) or ("Resource" in s) == ("NotResource" in s):
        raise GrantsError(f"{where}: needs exactly one of Action/NotAction and one of Resource/NotResource")
    if bucket_policy and "Principal" not in s:
        raise GrantsError(f"{where}.Principal: a bucket policy statement names its principals")
    sid = s.get("Sid", "")
    return Statement(
        effect=s["Effect"],
        actions=_strings(s["Action"], f"{where}.Action") if "Action" in s else (),
        not_actions=_strings(s["NotAction"], f"{where}.NotAction") if "NotAction" in s else None,
        resources=_strings(s["Resource"], f"{where}.Resource") if "Resource" in s else (),
        not_resources=_strings(s["NotResource"], f"{where}.NotResource") if "NotResource" in s else None,
        principals=_principals(s["Principal"], f"{where}.Principal") if "Principal" in s else None,
        conditional=bool(s.get("Condition")), sid=sid if isinstance(sid, str) else "")


def _arn_path(resource: str) -> str | None:
    """`bucket/key` pattern of an S3 ARN (any partition), "*" for "*"; None for other services."""
    if resource == "*":
        return "*"
    parts = resource.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and fnmatchcase("s3", parts[2]):
        return parts[5]
    return None


def _allowed(statements: list[Statement], identity: str, action: str, bucket: str) -> list[tuple[Statement, Reach]]:
    """(statement, reach) of every Allow that may grant `action` on keys of the bucket."""
    out = []
    for st in statements:
        if st.effect != "Allow" or not st.names(identity) or not st.acts(action):
            continue
        if st.not_resources is not None:
            out.append((st, Reach("")))  # everything but some resources: assume it reaches everything
            continue
        for res in st.resources:
            path = _arn_path(res)
            reach = Reach("") if path == "*" else _reach_of_path(path, bucket) if path else None
            if reach is not None:
                out.append((st, reach))
    return out


def _bucket_allowed(statements: list[Statement], identity: str, action: str, bucket: str) -> Statement | None:
    for st in statements:
        if st.effect != "Allow" or not st.names(identity) or not st.acts(action):
            continue
        paths = [_arn_path(r) for r in st.resources]
        if st.not_resources is not None or any(p and fnmatchcase(bucket, p) for p in paths):
            return st
    return None


def _denied(statements: list[Statement], identity: str, action: str, bucket: str, reach: Reach | None,
            except_area: tuple[str, ...] = ()) -> bool:
    """True when an unconditional Deny surely covers `action` on reach (None: the bucket itself) or, with
    except_area, on every key outside that area."""
    for st in statements:
        if st.effect != "Deny" or st.conditional or not st.names(identity) or not st.acts(action):
            continue
        if st.not_resources is not None:
            paths = [_arn_path(r) for r in st.not_resources]
            spared = [_reach_of_path(p, bucket) if p and p != "*" else (Reach("") if p == "*" else None)
                      for p in paths]
            if reach is None:
                if not any(p and fnmatchcase(bucket, p) for p in paths):
                    return True
            elif all(s is None or (s.within(except_area) if except_area else not _touches(s, reach))
                     for s in spared):
                return True
            continue
        paths = [p for p in (_arn_path(r) for r in st.resources) if p]
        if reach is None and any(p == "*" or fnmatchcase(bucket, p) for p in paths):
            return True
        target = "" if except_area else (reach.prefix if reach else None)
        if target is not None and any(_covers(p, bucket, target) for p in paths):
            return True
    return False


def _touches(a: Reach, b: Reach) -> bool:
    """Whether two reaches share a key."""
    if a.exact and b.exact:
        return a.prefix == b.prefix
    if a.exact or b.exact:
        key, pre = (a, b) if a.exact else (b, a)
        return key.prefix.startswith(pre.prefix)
    return a.prefix.startswith(b.prefix) or b.prefix.startswith(a.prefix)


def judge_aws(statements: dict[str, list[Statement]], scope: Scope,
              expect_denies: frozenset[str] | None = None) -> list[Finding]:
    """Rules broken by each non-privileged identity, given the statements that apply to it (IAM policies
    attached to it plus the bucket policy). Writers in expect_denies (default: every writer) must carry the
    explicit denies; leave out a writer whose own policy was not seen."""
    findings: list[Finding] = []
    for name, sts in statements.items():
        if name in scope.privileged:
            continue
        findings += _aws_bucket_level(name, sts, scope)
        findings += _aws_objects(name, sts, scope)
        if name in scope.writers and (expect_denies is None or name in expect_denies):
            findings += _aws_expected_denies(name, sts, scope)
        if sts:  # an identity no document names (a default name) may not exist at all
            findings += _shared_writer(name, scope)
    return findings


def _aws_bucket_level(name: str, sts: list[Statement], scope: Scope) -> list[Finding]:
    out = []
    for action in _AWS_BUCKET_LEVEL:
        st = _bucket_allowed(sts, name, action, scope.bucket)
        if st and not _denied(sts, name, action, scope.bucket, None):
            out.append(Finding(name, f"{st.label()} allows {action}", "bucket_write",
                               f"may {action[3:]} on bucket {scope.bucket}"))
    return out


def _aws_objects(name: str, sts: list[Statement], scope: Scope) -> list[Finding]:
    rules = [(a, "delete_version", ()) for a in ("s3:DeleteObjectVersion", "s3:BypassGovernanceRetention")]
    rules += [(a, "retention", scope.retention_area(name)) for a in ("s3:PutObjectRetention", "s3:PutObjectLegalHold")]
    rules += [(a, "write_reach", scope.write_area(name)) for a in _AWS_WRITE]
    if name == scope.canary:
        rules[0] = ("s3:DeleteObjectVersion", "delete_version", (CANARY_PREFIX,))
    out = []
    own = (*scope.writers.get(name, ()), *scope.verifiers.get(name, ()))
    for action, rule, area in rules:
        for st, reach in _allowed(sts, name, action, scope.bucket):
            if reach.within(area) or _denied(sts, name, action, scope.bucket, reach):
                continue
            out.append(Finding(name, f"{st.label()} allows {action}", rule,
                               _outside(reach, area, scope.known_hosts(), own)))
            break
    return out


def _aws_expected_denies(name: str, sts: list[Statement], scope: Scope) -> list[Finding]:
    """A writer carries an explicit Deny of version deletes, governance bypass and retention changes outside
    its own evidence prefix, so no Allow added later (or elsewhere) can give them back."""
    out = []
    for action, area in (("s3:DeleteObjectVersion", ()), ("s3:BypassGovernanceRetention", ()),
                         ("s3:PutObjectRetention", scope.retention_area(name))):
        if not _denied(sts, name, action, scope.bucket, Reach(""), except_area=area):
            where = f" outside {', '.join(area)}" if area else f" on every key of {scope.bucket}"
            out.append(Finding(name, f"no Deny of {action}", "missing_deny",
                               f"expected an explicit, unconditional Deny of {action}{where}"))
    return out
