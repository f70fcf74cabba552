"""The storage audit's own reading of who may do what in the bucket (`grants:` in backupd.yaml).

The writer probes ask the audited host's keys what they may do; this asks the store instead, so a verifier
(which holds no writer keys) judges the writer too: the SeaweedFS identities file handed to it read-only,
AWS IAM policy files handed over, and each bucket's policy read with the auditor's keys. The rules live in
backupd.storage.grants; a store that exposes nothing is reported "not checked", never ok.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

from backupd.config import schema as config_schema
from backupd.errors import ConfigError
from backupd.policy.schema import S3Destination
from backupd.storage import grants
from backupd.storage.checks import Check, passed
from backupd.storage.client import error_code, unsupported

_MAX_BYTES = 1 << 20


@dataclass
class Documents:
    """What this host was handed, parsed, and who is who."""

    seaweed: dict[str, list[str]] | None = None
    seaweed_source: str = ""
    seaweed_secrets: bool = False
    iam: dict[str, list[grants.Statement]] = field(default_factory=dict)
    bucket_policy: bool = True
    writers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    verifiers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    privileged: frozenset[str] = frozenset(grants.DEFAULT_PRIVILEGED)
    canary: str | None = "canary"
    verifier: bool = False  # read by a verifier, which holds no writer keys: the grants are its only check


def _read(cfg, key: str, raw: str) -> tuple[str, str]:
    """(text, path) of a handed-over document; ConfigError naming the config field and the file."""
    base = Path(cfg.path).resolve().parent if getattr(cfg, "path", None) else Path(".")
    path = base / raw
    where = f"{cfg.path or 'backupd.yaml'}: grants.{key}"
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path} ({exc.strerror})") from None
    if len(data) > _MAX_BYTES:
        raise ConfigError(f"{where}: {path} is larger than {_MAX_BYTES} bytes")
    try:
        return data.decode(), str(path)
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {path} is not UTF-8 text") from None


def _by_identity(mapping: dict[str, str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for host, identity in sorted(mapping.items()):
        out[identity] = (*out.get(identity, ()), host)
    return out


def _default_writers(hosts: list[str]) -> dict[str, tuple[str, ...]]:
    """Each backup host's writer as `storage init` names it (`writer-<host>`), and the generic `writer` of the
    test stacks and older templates for all of them (shared by several hosts, it is a finding)."""
    return {**{f"writer-{h}": (h,) for h in hosts}, **({"writer": tuple(sorted(hosts))} if hosts else {})}


def load(cfg) -> Documents:
    """Parse the `grants:` section and every document it names; ConfigError (exit 2) on any problem."""
    raw = config_schema.section("grants", getattr(cfg, "grants", None) or {})
    docs = Documents(bucket_policy=raw.bucket_policy, privileged=frozenset(raw.privileged), canary=raw.canary,
                     verifier=bool(getattr(cfg, "verifier", False)))
    hosts = cfg.backup_hosts() if hasattr(cfg, "backup_hosts") else []
    docs.writers = _by_identity(raw.writers) if raw.writers is not None else _default_writers(hosts)
    own = {cfg.host: "verifier"} if getattr(cfg, "verifier", False) and cfg.host else {}
    docs.verifiers = _by_identity(raw.verifiers if raw.verifiers is not None else own)
    try:
        if raw.seaweedfs_identities:
            text, docs.seaweed_source = _read(cfg, "seaweedfs_identities", raw.seaweedfs_identities)
            docs.seaweed, docs.seaweed_secrets = grants.parse_seaweed(text, docs.seaweed_source)
        for identity, name in sorted((raw.iam_policies or {}).items()):
            text, source = _read(cfg, f"iam_policies.{identity}", name)
            docs.iam[identity] = grants.parse_policy(text, source)
    except grants.GrantsError as exc:
        raise ConfigError(f"{cfg.path or 'backupd.yaml'}: grants: {exc}") from None
    return docs


def scope(docs: Documents, policy_set, dest: S3Destination) -> grants.Scope:
    """Who is who in dest's bucket; the restic paths are every destination's path in that bucket."""
    paths = tuple(sorted({d.path for d in policy_set.destinations.values()
                          if isinstance(d, S3Destination) and d.bucket == dest.bucket}))
    return grants.Scope(bucket=dest.bucket, restic_paths=paths, writers=docs.writers, verifiers=docs.verifiers,
                        canary=docs.canary, privileged=docs.privileged)


def _bucket_policy(auditor, bucket: str) -> tuple[list[grants.Statement] | None, Check | None]:
    """(statements, None); (None, None) when there is none or the server has none; (None, a check) when it
    cannot be read or judged (its content is attacker input: malformed is a finding, never a traceback)."""
    try:
        text = auditor.get_bucket_policy(Bucket=bucket).get("Policy")
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucketPolicy" or unsupported(exc):
            return None, None
        return None, Check("grants_bucket_policy", False, f"the bucket policy of {bucket} could not be read "
                           f"({error_code(exc)}): grant the auditor s3:GetBucketPolicy", "warning")
    if not isinstance(text, str) or not text.strip():
        return None, None
    try:
        return grants.parse_policy(text, f"bucket policy of {bucket}", bucket_policy=True), None
    except grants.GrantsError as exc:
        return None, Check("grants_bucket_policy", False, f"cannot judge: {exc}")


def _aws_statements(docs: Documents, sc: grants.Scope, policy: list | None) -> dict[str, list[grants.Statement]]:
    names = set(docs.iam) | set(docs.writers) | set(docs.verifiers) | ({docs.canary} if docs.canary else set())
    for st in policy or []:
        # the account itself (`arn:aws:iam::N:root`) delegates to IAM: not an identity to judge
        names |= {p.rsplit("/", 1)[-1] for p in st.principals or () if p != "*" and not p.endswith(":root")}
    return {n: [*docs.iam.get(n, []), *[s for s in policy or [] if s.names(n)]] for n in sorted(names)
            if n in docs.iam or policy}


def _to_checks(findings: list[grants.Finding], shown: int = 3) -> list[Check]:
    """One check per identity and rule: the first findings in full, the further grants by name."""
    groups: dict[tuple[str, str], list[grants.Finding]] = {}
    for f in findings:
        groups.setdefault((f.identity, f.rule), []).append(f)
    out = []
    for (identity, rule), group in groups.items():
        detail = "; ".join(f.text() for f in group[:shown])
        if len(group) > shown:
            rest = [f.grant for f in group[shown:]]
            detail += f"; and {len(rest)} more grants ({', '.join(rest[:10])}{', ...' if len(rest) > 10 else ''})"
        out.append(Check(f"grants_{rule}:{identity}", False, detail))
    return out


def checks(docs: Documents, policy_set, dest: S3Destination, auditor) -> list[Check]:
    """The grant checks of one destination; a store that exposes nothing gives one "not checked" line: a
    warning on a verifier, info on a backup host (whose writer probes test its own keys)."""
    sc = scope(docs, policy_set, dest)
    out, judged = _seaweed_checks(docs, sc)
    more, source = _aws_checks(docs, sc, auditor)
    out, judged = out + more, judged + ([source] if source else [])
    if not judged:
        return out + [Check("grants", False, "not checked: this store exposes no grants to this host (no bucket "
                            "policy; configure grants.seaweedfs_identities or grants.iam_policies)",
                            "warning" if docs.verifier else "info")]
    if not any(not c.ok and c.severity == "error" for c in out):
        out.append(passed("grants", f"no identity but {', '.join(sorted(sc.privileged))} may weaken the bucket, "
                          f"delete versions or write outside its own prefix (judged from {'; '.join(judged)})"))
    return out


def _seaweed_checks(docs: Documents, sc: grants.Scope) -> tuple[list[Check], list[str]]:
    """(checks, [what was judged]) from the identities file, when it grants anything on this bucket."""
    if docs.seaweed is None or not grants.seaweed_names_bucket(docs.seaweed, sc.bucket):
        return [], []
    out = _to_checks(grants.judge_seaweed(docs.seaweed, sc))
    if docs.seaweed_secrets:
        out.append(Check("grants_file_secrets", False, f"{docs.seaweed_source} carries secret keys: hand this "
                         "host a copy without the identities' credentials", "warning"))
    return out, [f"the SeaweedFS identities file {docs.seaweed_source} ({len(docs.seaweed)} identities)"]


def _aws_checks(docs: Documents, sc: grants.Scope, auditor) -> tuple[list[Check], str | None]:
    """(checks, what was judged or None) from the bucket policy and the IAM policy files."""
    policy, problem = _bucket_policy(auditor, sc.bucket) if docs.bucket_policy else (None, None)
    out = [problem] if problem else []
    statements = _aws_statements(docs, sc, policy)
    if not statements:
        return out, None
    out += _to_checks(grants.judge_aws(statements, sc, expect_denies=frozenset(docs.iam)))
    unseen = [w for w in sorted(docs.writers) if w not in docs.iam]
    if policy and unseen and docs.seaweed is None:
        out.append(Check("grants_partial", False, f"the IAM policies of the writers {', '.join(unseen)} were not "
                         "handed over (grants.iam_policies): their explicit denies are unchecked", "warning"))
    parts = (["the bucket policy"] if policy else []) + ([f"IAM policies of {', '.join(sorted(docs.iam))}"]
                                                        if docs.iam else [])
    return out, " and ".join(parts)
