"""`backupd policy lint`: schema, guideline and drill-spec findings (render/results.py prints them as
`file:line: field: message` and maps them to the exit code)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from backupd.config import loader as config_mod
from backupd.config import credentials
from backupd.drill.spec import default_spec, load_spec
from backupd.errors import ConfigError
from backupd.policy.lint import lint_paths
from backupd.policy.loader import LintFinding, dotted


def _config(config_path: Path | None, need: bool) -> config_mod.Config:
    """The config when one is given or present; defaults when linting explicit files without one."""
    path = config_path or config_mod.default_path()
    if config_path is None and not path.exists() and not need:
        return config_mod.Config(path=None)
    return config_mod.load(path)


YEAR = timedelta(days=365)


def default_restore_tests(paths: list[Path]) -> Path:
    """restore_tests/ beside the directory of the (first) policy file."""
    first = Path(paths[0]).resolve()
    return (first if first.is_dir() else first.parent).parent / "restore_tests"


def drill_findings(result, folder: Path) -> list[LintFinding]:
    """Every target needs a readable drill spec with a full drill at least yearly (guideline 2.7.2)."""
    out = []
    for loaded in result.policies:
        for i, target in enumerate(loaded.policy.targets if loaded.policy else []):
            here = ("targets", i, "drill")
            line = loaded.line_of(here)
            try:
                spec = load_spec(folder / f"{target.drill}.yaml") if target.drill else default_spec()
            except ConfigError as exc:
                out.append(LintFinding(str(loaded.path), line, dotted(here), str(exc).splitlines()[-1]))
                continue
            full = spec.schedule.full
            if full is None or full > YEAR:
                out.append(LintFinding(str(loaded.path), line, dotted(here), f"drill {spec.name or 'default'} "
                                       "schedules no full restore drill within 12 months; the guideline asks "
                                       "for restore tests at least yearly"))
    return out


def role_findings(cfg: config_mod.Config, role: str) -> list[LintFinding]:
    """The config's own credential file (evidence.credentials_file) must be readable when the role uses it."""
    name = (cfg.evidence or {}).get("credentials_file")
    if not name or not (cfg.evidence or {}).get("mirror"):  # read only to mirror the ledger
        return []
    path = cfg.secrets_dir / name
    if path.is_file() and os.access(path, os.R_OK):
        return []
    return [LintFinding(str(cfg.path), 1, "evidence.credentials_file", f"cannot read {path}: not a readable "
                        "file (the keys this role mirrors its evidence with)")]


#: where an installed unit is looked for (its drop-ins beside it)
UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/local/lib/systemd/system"), Path("/lib/systemd/system"))


def installed_unit(role: str) -> Path | None:
    """The role's installed unit file, if any."""
    return next((d / credentials.UNITS[role] for d in UNIT_DIRS if (d / credentials.UNITS[role]).is_file()), None)


def _by_unit(finding: LintFinding, role: str, secrets_dir: Path) -> LintFinding | None:
    """An unreadable secret in the unit's credentials directory while the unit is not running: judged by what
    the unit hands over (LoadCredential=); None when it loads a readable file under that name."""
    unit = installed_unit(role)
    path = Path(finding.message.removeprefix("cannot read ").split(": ", 1)[0])
    if unit is None or secrets_dir.exists() or secrets_dir.parent != Path("/run/credentials") \
            or path.parent != secrets_dir:
        return finding
    source = credentials.unit_credentials(unit).get(path.name)
    if source is None:
        finding.message = (f"{unit} does not load {path.name} (the {role} role reads it: add "
                           f"LoadCredential={path.name}:<file>)")
    elif not (source.is_file() and os.access(source, os.R_OK)):
        finding.message = f"cannot read {source} (LoadCredential={path.name} of {unit})"
    else:
        return None
    return finding


def malformed_keys(result, role: str) -> list[LintFinding]:
    """Readable S3 key files of the role that hold no keys (e.g. the daemon unit's keyless default)."""
    out = []
    for loaded in result.policies:
        for name, dest in (loaded.policy.destinations.items() if loaded.policy else []):
            for key in sorted(credentials.USES[role]):
                path = getattr(dest, key, None) if key.endswith("credentials_file") else None
                if path is None or not (path.is_file() and os.access(path, os.R_OK)):
                    continue  # unset, or already a finding
                try:
                    credentials.read_credentials(path)
                except ConfigError as exc:
                    here = ("destinations", name, key)
                    out.append(LintFinding(str(loaded.path), loaded.line_of(here), dotted(here), str(exc)))
    return out


def _role_hint(finding: LintFinding, role: str, secrets_dir: Path) -> LintFinding | None:
    """Say which unit must provide an unreadable secret the role uses (None: its unit provides it)."""
    if finding.severity != "error" or finding.field.rsplit(".", 1)[-1] not in credentials.USES[role]:
        return finding
    judged = _by_unit(finding, role, secrets_dir)
    if judged is not None and credentials.UNITS[role] not in judged.message:
        judged.message += f" (the {role} role reads it: {credentials.UNITS[role]} must load it)"
    return judged


def run(files: tuple[Path, ...], config_path: Path | None, role: str | None = None):
    """Lint files (or the config's policies) and their drill specs; the LintResult (render/results.py
    turns it into the findings list and the exit code). Without `role` only the files the config's role
    needs to load its policies are checked; with it (daemon, maintenance, verifier) every file that role
    reads, and that the fields it cannot act without are set."""
    cfg = _config(config_path, need=not files)
    paths = list(files) if files else cfg.policy_files()
    if role is None:
        result = lint_paths(paths, cfg.secrets_dir, held=cfg.secrets_held())
    else:
        role = credentials.role_of(role)
        result = lint_paths(paths, cfg.secrets_dir, held=credentials.USES[role], named=credentials.MUST_NAME[role])
        found = result.findings + role_findings(cfg, role) + malformed_keys(result, role)
        hinted = (_role_hint(f, role, cfg.secrets_dir) for f in found)
        result.findings = [f for f in hinted if f is not None]
    result.findings += drill_findings(result, cfg.restore_tests or default_restore_tests(paths))
    return result
