"""Keyring: which key belongs to which role and host(s), and which record kinds each role may sign.

A YAML or JSON file (auditors keep it; `evidence verify|export|pull --keyring FILE`):

```yaml
roles:
  backup-host:
    public_key: tos-01.pub            # PEM file (relative to the keyring) or inline PEM; or public_keys: [...]
    hosts: [tos-01]                   # the hosts whose records its keys may sign
    kinds: ["*"]                      # "*" (default): any kind
  verifier:                           # a role named verifier* (or with verifier: true) attests drills
    public_key: verifier.pub
    hosts: [verifier-01]
    kinds: [drill, check, storage_audit]
```

With a verifier role present, a drill record signed by any other role is a finding: the host attested
its own drill (separation of duties). A record whose `host` is not one of its signing role's `hosts`
is a finding (a host writing records in another host's name). Without `hosts` (older keyrings) each
key is bound to the host of the first record it signs, and verify says so in a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from backupd.errors import ConfigError
from backupd.evidence import keys

MAX_BYTES = 1024 * 1024
#: Kinds the ledger machinery writes itself; every role may sign them.
LEDGER_KINDS = frozenset({"key-rotation", "ledger-repair", "ledger-regression", "mirror-foreign-object",
                          "mirror-foreign-object-acknowledged"})


@dataclass
class Role:
    name: str
    kinds: frozenset[str] | None  # None: any kind
    verifier: bool
    kids: list[str] = field(default_factory=list)
    hosts: frozenset[str] | None = None  # None: bound by the first record each key signs

    def may_sign(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds or kind in LEDGER_KINDS


@dataclass
class Keyring:
    path: str
    roles: dict[str, Role]
    keys: dict[str, object]      # kid -> Ed25519 public key
    role_of: dict[str, str]      # kid -> role name

    @property
    def has_verifier(self) -> bool:
        return any(r.verifier for r in self.roles.values())


def describe(ring: Keyring | None) -> dict | None:
    """The keyring as reports show it: per role its kinds, hosts, keys and whether it is a verifier."""
    if ring is None:
        return None
    return {"file": ring.path, "roles": {n: {"kinds": sorted(r.kinds) if r.kinds is not None else ["*"],
                                             "hosts": sorted(r.hosts) if r.hosts is not None else None,
                                             "verifier": r.verifier, "keys": r.kids} for n, r in ring.roles.items()}}


def load(path: Path) -> Keyring:
    """The keyring in path; ConfigError naming the file and the field when it is wrong."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read keyring ({exc.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: keyring larger than 1 MiB")
    try:
        doc = YAML(typ="safe", pure=True).load(raw.decode("utf-8"))
    except (UnicodeDecodeError, YAMLError, MarkedYAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not a YAML/JSON keyring") from None
    if isinstance(doc, dict) and isinstance(doc.get("roles"), dict):
        doc = doc["roles"]
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"{path}: roles: expected a mapping of role name -> {{public_key, kinds}}")
    ring = Keyring(str(path), {}, {}, {})
    for name, spec in doc.items():
        _role(ring, Path(path).parent, str(name), spec)
    return ring


def _role(ring: Keyring, base: Path, name: str, spec) -> None:
    where = f"{ring.path}: roles.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping with public_key and kinds")
    unknown = set(spec) - {"public_key", "public_keys", "kinds", "verifier", "hosts"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    pems = spec.get("public_keys", []) if "public_keys" in spec else [spec.get("public_key")]
    if not isinstance(pems, list) or not pems or not all(isinstance(p, str) and p for p in pems):
        raise ConfigError(f"{where}.public_key: expected a PEM file name or inline PEM (or public_keys: a list)")
    kinds = spec.get("kinds", ["*"])
    if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
        raise ConfigError(f"{where}.kinds: expected a list of record kinds (or [\"*\"])")
    verifier = spec.get("verifier", name.startswith("verifier"))
    if not isinstance(verifier, bool):
        raise ConfigError(f"{where}.verifier: expected true or false")
    hosts = spec.get("hosts")
    if hosts is not None and (not isinstance(hosts, list) or not hosts
                              or not all(isinstance(h, str) and h for h in hosts)):
        raise ConfigError(f"{where}.hosts: expected a list of host names (the hosts whose records its keys sign)")
    role = Role(name, None if "*" in kinds else frozenset(kinds), verifier,
                hosts=frozenset(hosts) if hosts is not None else None)
    for pem in pems:
        key = _public(base, pem, f"{where}.public_key")
        kid = keys.fingerprint(key)
        if kid in ring.role_of and ring.role_of[kid] != name:
            raise ConfigError(f"{where}.public_key: key {kid} is already the key of role {ring.role_of[kid]}")
        ring.keys[kid], ring.role_of[kid] = key, name
        role.kids.append(kid)
    ring.roles[name] = role


def _public(base: Path, text: str, where: str):
    if "-----BEGIN" in text:
        return keys.load_public(text.encode("ascii", "replace"), where)
    try:
        data = (base / text).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {base / text} ({exc.strerror})") from None
    return keys.load_public(data, f"{where} ({base / text})")
