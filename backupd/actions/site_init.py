"""`backupd init`: a new site's backupd.yaml, policy, drill specs and secrets, then keys, escrow and lint.

`write_files(answers)` writes the files (never over an existing one: ConfigError, exit 2, before anything is
written); `bootstrap(cfg, ...)` creates the repository password (`keys init`), lints, escrows the password
to the recovery key when one is given (`keys escrow`) and lists the next steps.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from backupd.actions import keys
from backupd.actions.lint import drill_findings
from backupd.config import templates
from backupd.config.credentials import FILE_NAMES, read_credentials
from backupd.errors import ConfigError
from backupd.keys.password import write_secret_file
from backupd.policy.lint import lint_paths, load_policy_set

PORTS = ("keihin", "nagoya", "osaka", "kobe", "hakata", "other")
DESTINATION = "worm-primary"  # the shipped policy's destination
MAINTENANCE_SECRETS = "/etc/backupd/maintenance-secrets"  # deploy/systemd/install.sh, backupd-maintenance.service


@dataclass
class Answers:
    """Everything init needs, from flags or prompts."""

    site: str
    port: str
    host: str
    endpoint: str
    bucket: str
    region: str
    state_dir: Path
    secrets_dir: Path
    config_dir: Path
    writer_credentials: Path | None = None
    canary_credentials: Path | None = None
    auditor_credentials: Path | None = None

    def credentials(self) -> list[tuple[str, Path | None]]:
        """(role in _paths, the given file) of each identity whose keys init copies."""
        return [("writer credentials", self.writer_credentials), ("canary credentials", self.canary_credentials),
                ("auditor credentials", self.auditor_credentials)]

    def check(self) -> None:
        """ConfigError naming the first bad answer (the policy schema checks the rest at lint)."""
        if not self.site.strip():
            raise ConfigError("--site: the terminal's name must not be empty")
        if self.port not in PORTS:
            raise ConfigError(f"--port: {self.port!r} is not one of {', '.join(PORTS)}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", self.host):
            raise ConfigError(f"--host: {self.host!r} is not a host name (letters, digits, . _ -)")
        if not re.fullmatch(r"https?://[^\s/@]+(/\S*)?", self.endpoint):
            raise ConfigError(f"--endpoint: {self.endpoint!r} is not an http(s):// URL without user info")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", self.bucket):
            raise ConfigError(f"--bucket: {self.bucket!r} is not a valid S3 bucket name (3-63 of a-z 0-9 . -)")


def _paths(a: Answers) -> dict[str, Path]:
    """Every file init writes, by role."""
    out = {"config": a.config_dir / "backupd.yaml", "policy": a.config_dir / "policies" / f"{a.host}.yaml",
           "password": a.secrets_dir / "restic-password"}
    for spec in sorted(templates.path("restore_tests").glob("*.yaml")):
        out[f"drill {spec.stem}"] = a.config_dir / "restore_tests" / spec.name
    if a.writer_credentials:
        out["writer credentials"] = a.secrets_dir / FILE_NAMES["credentials_file"]
    if a.canary_credentials:
        out["canary credentials"] = a.secrets_dir / FILE_NAMES["canary_credentials_file"]
    if a.auditor_credentials:
        out["auditor credentials"] = a.secrets_dir / FILE_NAMES["auditor_credentials_file"]
    return out


def _policy_text(a: Answers) -> str:
    """policies/terminal.yaml with this site's name, port, host and bucket (comments kept)."""
    yaml = YAML()  # round-trip: the shipped comments explain every field to the operator
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)  # the shipped file's layout
    yaml.width = 4096  # never fold a long description
    doc = yaml.load(templates.path("policies", "terminal.yaml").read_text(encoding="utf-8"))
    doc["site"]["name"], doc["site"]["port"], doc["site"]["host"] = a.site, a.port, a.host
    dest = doc["destinations"][DESTINATION]
    dest["endpoint"], dest["bucket"], dest["region"] = a.endpoint, a.bucket, a.region
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _config_text(a: Answers) -> str:
    q = json.dumps  # a JSON string is a valid YAML scalar
    return ("# Written by backupd init; see docs/operator-guide.md.\n"
            "policies: [policies/*.yaml]          # relative to this file\n"
            "restore_tests: restore_tests\n"
            f"state_dir: {q(str(a.state_dir))}\nsecrets_dir: {q(str(a.secrets_dir))}\nhost: {q(a.host)}\n")


def _public(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)


def write_files(a: Answers) -> dict[str, str]:
    """Write config, policy, drill specs and the given credentials; refuse when any of them exists."""
    a.check()
    paths = _paths(a)
    taken = [str(p) for p in paths.values() if p.exists() or p.is_symlink()]
    if taken:
        raise ConfigError("refusing to overwrite existing file(s): " + ", ".join(taken)
                          + " (move them away or choose another --config-dir/--secrets-dir)")
    for role, src in a.credentials():
        if src:
            read_credentials(src)  # a malformed file is refused before anything is written
    policy = _policy_text(a)
    for folder in (a.config_dir, a.config_dir / "policies", a.config_dir / "restore_tests"):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)  # the service user reads config and policies (no secrets in them)
    a.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _public(paths["policy"], policy)
    for role, path in paths.items():
        if role.startswith("drill "):
            _public(path, templates.path("restore_tests", path.name).read_text(encoding="utf-8"))
    for role, src in a.credentials():
        if src:
            write_secret_file(paths[role], src.read_text(encoding="utf-8"))
    _public(paths["config"], _config_text(a))  # last: its presence means "initialised"
    return {role: str(p) for role, p in paths.items() if role != "password"}


def _lint(cfg) -> list[str]:
    paths = cfg.policy_files()
    result = lint_paths(paths, cfg.secrets_dir, held=cfg.secrets_held())  # what the daemon needs to start
    result.findings += drill_findings(result, cfg.restore_tests)
    return [str(f) for f in result.findings if f.severity == "error" or f.gap]


def bootstrap(cfg, recovery_public_key: Path | None) -> dict:
    """keys init, lint, keys escrow (when a recovery key is given and lint is clean); the next steps."""
    out = {"keys": keys.init(cfg), "lint": _lint(cfg), "escrow": [], "next": []}
    secrets = cfg.secrets_dir
    names = {FILE_NAMES[f]: f for f in ("credentials_file", "canary_credentials_file", "auditor_credentials_file")}
    missing = [n for n in names if not (secrets / n).exists()]
    if missing:
        out["next"].append(f"put {', '.join(missing)} (AWS_ACCESS_KEY_ID=/AWS_SECRET_ACCESS_KEY=, mode 0600) "
                           f"into {secrets}: the keys of the identities `backupd storage init` prints, named by the "
                           f"policy's {', '.join(names[n] for n in missing)} (backupd.service loads them)")
    out["next"].append(f"put {FILE_NAMES['maintainer_credentials_file']} (the maintainer identity) into "
                       f"{MAINTENANCE_SECRETS} only: backupd-maintenance.service loads it, the backup service "
                       "never holds it")
    if recovery_public_key and not out["lint"]:
        out["escrow"] = keys.escrow(cfg, load_policy_set(cfg.policy_files(), cfg.secrets_dir,
                                                         held=cfg.secrets_held()), recovery_public_key)
    elif recovery_public_key:
        out["next"].append(f"after lint is clean: backupd keys escrow --recovery-public-key {recovery_public_key}")
    else:
        out["next"].append("escrow the repository password to an offline recovery key: backupd keys escrow "
                           "--recovery-public-key recovery.pub (docs/operator-guide.md)")
    conf = f"--config {cfg.path}"
    out["next"] += [f"review {cfg.policy_files()[0]}: sources, frequency (RPO), rto, min_history per target",
                    f"backupd policy lint {conf}", f"backupd backup {conf}", f"backupd drill {conf}",
                    f"backupd audit storage {conf}",
                    "install the service: deploy/systemd/install.sh --enable (docs/operator-guide.md)"]
    return out
