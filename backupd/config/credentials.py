"""S3 credentials files (secrets_dir): KEY=VALUE lines with the AWS_* keys restic and boto3 need."""

from __future__ import annotations

from pathlib import Path

from backupd.config import envfile

CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def read_credentials(path: Path) -> dict[str, str]:
    """The AWS_* keys of an S3 credentials file; ConfigError naming file and line when malformed."""
    return envfile.read(path, allowed=CREDENTIAL_KEYS, required=CREDENTIAL_KEYS[:2])


# --- which role holds which file ---------------------------------------------------------------------------
# One credentials model per role: each systemd unit loads exactly the files its role reads, under the names
# the policies and configs use unchanged (tests/unit/test_deploy_docs.py holds the units to this table).

#: config `role:` -> its unit. `policy lint --role daemon` means the backup role.
UNITS = {"backup": "backupd.service", "maintenance": "backupd-maintenance.service",
         "verifier": "backupd-verifier.service"}
ROLE_ALIASES = {"daemon": "backup", "backup": "backup", "maintenance": "maintenance", "verifier": "verifier"}

#: Policy secret fields a role needs to load its policies at all: unreadable -> the policy set is refused.
#: A file only another role reads is never among them (the daemon never needs the maintainer's keys).
LOAD = {
    "backup": frozenset({"password_file", "credentials_file"}),
    "maintenance": frozenset({"password_file", "maintainer_credentials_file"}),
    "verifier": frozenset({"password_file", "auditor_credentials_file"}),
}
#: Every policy secret field the role reads when set (its storage audit reads the auditor's and the canary's
#: keys): `policy lint --role` checks them all; a missing one there is a finding, never a load error.
USES = {
    "backup": LOAD["backup"] | {"auditor_credentials_file", "canary_credentials_file"},
    "maintenance": LOAD["maintenance"],
    "verifier": LOAD["verifier"] | {"canary_credentials_file"},
}
#: Fields every S3 destination must set for the role to act at all (it has no fallback keys).
MUST_NAME = {"backup": (), "maintenance": ("maintainer_credentials_file",), "verifier": ("auditor_credentials_file",)}

#: The file names the shipped policy, the configs, the units, `backupd init`, `storage init` and the operator
#: guide use, by policy field (`evidence.credentials_file` is the verifier's evidence prefix keys).
FILE_NAMES = {
    "password_file": "restic-password",
    "credentials_file": "s3-writer.env",
    "maintainer_credentials_file": "s3-maintainer.env",
    "auditor_credentials_file": "s3-auditor.env",
    "canary_credentials_file": "s3-canary.env",
    "evidence.credentials_file": "s3-verifier.env",
}
#: storage init's identity -> the policy (or config) field whose file holds its keys.
IDENTITY_FIELDS = {"writer": "credentials_file", "maintainer": "maintainer_credentials_file",
                   "auditor": "auditor_credentials_file", "verifier": "evidence.credentials_file",
                   "canary": "canary_credentials_file"}


def role_of(name: str) -> str:
    """The config role a CLI role name means (daemon -> backup); ValueError for an unknown one."""
    if name not in ROLE_ALIASES:
        raise ValueError(f"unknown role {name!r}; use daemon, maintenance or verifier")
    return ROLE_ALIASES[name]


def unit_files(role: str) -> list[str]:
    """The credential names the role's unit loads, in the shipped set-up (policy template + its config)."""
    fields = USES[role] | ({"evidence.credentials_file"} if role == "verifier" else set())
    return sorted(FILE_NAMES[f] for f in fields)


def unit_credentials(unit: Path) -> dict[str, Path]:
    """A unit file's LoadCredential= (name -> source file), drop-ins in <unit>.d/*.conf included (later wins)."""
    found: dict[str, Path] = {}
    for path in [unit, *sorted(unit.parent.joinpath(unit.name + ".d").glob("*.conf"))]:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key.strip() == "LoadCredential":
                name, _, source = value.strip().partition(":")
                if not value.strip():
                    found.clear()  # an empty assignment resets the list
                elif name:
                    found[name] = Path(source or name)
    return found
