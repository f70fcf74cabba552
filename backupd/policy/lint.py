"""Lint a policy set (one or more files) against the schema and the port-sector guideline rules.

``lint_paths(paths, secrets_dir)`` -> ``LintResult`` (never raises for bad input);
``load_policy_set(paths, secrets_dir)`` -> ``PolicySet`` or ``ConfigError`` listing the error findings.
Errors are what makes a backup impossible or unsafe (unknown destinations, unreadable secrets, no
Object-Lock copy). Guideline gaps (a missing category, short history, a rare frequency, no RTO) are
warnings marked ``gap``: `policy lint` exits 1 on them, backups and status run regardless.
Each finding names file, line and field; see docs/guideline.md for the rules' origin (M1-M3, 2.7.2).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from backupd.errors import ConfigError
from backupd.policy.durations import format_duration as fmt
from backupd.policy.loader import LintFinding, LoadedPolicy, dotted, load_policy_file
from backupd.policy.schema import REQUIRED_CATEGORIES, RemovableDestination, S3Destination, Site, Target

__all__ = ["LintFinding", "LintResult", "PolicySet", "lint_paths", "load_policy_set", "expand_paths"]

YEAR = timedelta(days=365)
MIN_HISTORY_ERROR = timedelta(weeks=3)
MIN_HISTORY_WARN = timedelta(weeks=6)
KEEP_PERIODS: dict[str, timedelta | None] = {
    "keep_last": None,  # one generation per backup: the frequency
    "keep_hourly": timedelta(hours=1),
    "keep_daily": timedelta(days=1),
    "keep_weekly": timedelta(weeks=1),
    "keep_monthly": timedelta(days=30),
    "keep_yearly": YEAR,
}
_MAX_MESSAGE_FINDINGS = 50


@dataclass
class LintResult:
    """All findings of a lint run, the loaded files, and whether any file was unreadable (exit 2)."""

    findings: list[LintFinding]
    policies: list[LoadedPolicy]
    unreadable: bool = False

    @property
    def errors(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[LintFinding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def gaps(self) -> list[LintFinding]:
        """Guideline gaps: warnings that `policy lint` counts as findings."""
        return [f for f in self.findings if f.gap]


@dataclass
class PolicySet:
    """A lint-clean set of policy files: one site, destinations and targets merged across files."""

    policies: list[LoadedPolicy]
    warnings: list[LintFinding] = field(default_factory=list)

    @property
    def site(self) -> Site:
        return next(p.policy.site for p in self.policies if p.policy and p.policy.site)

    @property
    def targets(self) -> list[Target]:
        return [t for p in self.policies if p.policy for t in p.policy.targets]

    @property
    def destinations(self) -> dict:
        return {n: d for p in self.policies if p.policy for n, d in p.policy.destinations.items()}

    def target(self, name: str) -> Target:
        """The target called ``name``; ConfigError listing the known names otherwise."""
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "(none)"
        raise ConfigError(f"no target named {name!r}; known: {known}")


def expand_paths(paths: Iterable[Path]) -> tuple[list[Path], list[LintFinding]]:
    """Files as given; a directory means its ``*.yaml``/``*.yml`` (sorted). Missing paths become findings."""
    files: list[Path] = []
    problems: list[LintFinding] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                problems.append(LintFinding(str(path), 0, "(file)", "directory holds no *.yaml policy files"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(LintFinding(str(path), 0, "(file)", "no such file or directory"))
    return files, problems


def lint_paths(paths: Iterable[Path], secrets_dir: Path, env: Mapping[str, str] | None = None,
               held: frozenset[str] | None = None, named: tuple[str, ...] = ()) -> LintResult:
    """Load every file, then run the guideline checks across the whole set. `held` names the secret
    fields this role reads (None: every one but the canary's); the others need not exist here (a verifier
    holds no writer keys, the daemon no maintainer keys). `named`: fields every S3 destination must set."""
    files, problems = expand_paths(paths)
    if not files and not problems:
        problems.append(LintFinding("(none)", 0, "(file)", "no policy files given"))
    loaded = [load_policy_file(f, secrets_dir, env) for f in files]
    findings = problems + [f for lp in loaded for f in lp.findings]
    findings += _check_set(loaded, held, named)
    unreadable = bool(problems) or any(lp.unreadable for lp in loaded)
    return LintResult(findings, loaded, unreadable)


def load_policy_set(paths: Iterable[Path], secrets_dir: Path, env: Mapping[str, str] | None = None,
                    held: frozenset[str] | None = None, named: tuple[str, ...] = ()) -> PolicySet:
    """Lint and return the set; raise ConfigError naming every error finding (warnings are kept on the set)."""
    result = lint_paths(paths, secrets_dir, env, held, named)
    if result.errors:
        lines = [str(f) for f in result.errors]
        more = len(lines) - _MAX_MESSAGE_FINDINGS
        shown = lines[:_MAX_MESSAGE_FINDINGS] + ([f"... and {more} more"] if more > 0 else [])
        raise ConfigError("policy has errors (run `backupd policy lint`):\n" + "\n".join(shown))
    return PolicySet(result.policies, result.warnings)


# --- checks ---------------------------------------------------------------------------------------------


def _check_set(loaded: list[LoadedPolicy], held: frozenset[str] | None = None,
               named: tuple[str, ...] = ()) -> list[LintFinding]:
    """Per-target and per-destination checks on valid files; set-wide checks when every file is valid."""
    valid = [lp for lp in loaded if lp.policy is not None]
    out: list[LintFinding] = []
    out += _check_destinations(valid, held, named)
    destinations = {n: d for lp in valid for n, d in lp.policy.destinations.items()}
    seen: dict[str, str] = {}
    for lp in valid:
        for i, target in enumerate(lp.policy.targets):
            out += _check_target(lp, i, target, destinations, seen)
    if valid and len(valid) == len(loaded):
        out += _check_coverage(valid)
    return out


def _finding(lp: LoadedPolicy, path: tuple, message: str, severity: str = "error") -> LintFinding:
    return LintFinding(str(lp.path), lp.line_of(path), dotted(path), message, severity)  # type: ignore[arg-type]


def _gap(lp: LoadedPolicy, path: tuple, message: str) -> LintFinding:
    """A guideline gap: reported (lint exit 1, conformance), never a reason to stop backing up."""
    return LintFinding(str(lp.path), lp.line_of(path), dotted(path), message, "warning", gap=True)


def _check_destinations(valid: list[LoadedPolicy], held: frozenset[str] | None = None,
                        named: tuple[str, ...] = ()) -> list[LintFinding]:
    out: list[LintFinding] = []
    seen: dict[str, str] = {}
    for lp in valid:
        for name, dest in lp.policy.destinations.items():
            here = ("destinations", name)
            if name in seen:
                out.append(_finding(lp, here, f"destination {name!r} is already defined at {seen[name]}"))
                continue
            seen[name] = f"{lp.path}:{lp.line_of(here)}"
            if isinstance(dest, S3Destination) and dest.lock_mode == "GOVERNANCE" and not dest.pilot:
                out.append(_finding(lp, here + ("lock_mode",), "GOVERNANCE mode lets privileged users delete "
                                    "locked backups; use COMPLIANCE (GOVERNANCE only with pilot: true)"))
            out += _check_role_secrets(lp, here, dest, held, named)
    out += _check_copy_from(valid)
    return out


def _check_copy_from(valid: list[LoadedPolicy]) -> list[LintFinding]:
    """copy_from must name another destination that is not itself a copy."""
    dests = {n: d for lp in valid for n, d in lp.policy.destinations.items()}
    out = []
    for lp in valid:
        for name, dest in lp.policy.destinations.items():
            source = dest.copy_from
            if source is None:
                continue
            here = ("destinations", name, "copy_from")
            if source == name or source not in dests:
                out.append(_finding(lp, here, f"copy_from {source!r} must name another destination"))
            elif isinstance(dests[source], RemovableDestination):
                out.append(_finding(lp, here, f"copy_from {source!r} is a removable destination; copy from the primary"))
            elif dests[source].copy_from is not None:
                out.append(_finding(lp, here, f"copy_from {source!r} is itself a copy; copy from the primary"))
    for lp in valid:
        for i, target in enumerate(lp.policy.targets):
            for name in target.destinations:
                source = getattr(dests.get(name), "copy_from", None)
                if source and source not in target.destinations:
                    out.append(_finding(lp, ("targets", i, "destinations"), f"destination {name!r} is copied "
                                        f"from {source!r}, which this target does not list"))
    return out


def _check_role_secrets(lp: LoadedPolicy, here: tuple, dest, held: frozenset[str] | None,
                        named: tuple[str, ...]) -> list[LintFinding]:
    """The secret files this role reads must be readable; the fields it cannot act without must be set."""
    out: list[LintFinding] = []
    files = dict(dest.secret_files)
    if held is not None and "canary_credentials_file" in held and getattr(dest, "canary_credentials_file", None):
        files["canary_credentials_file"] = dest.canary_credentials_file  # only a role's own lint asks for it
    for key, secret in files.items():
        if held is None or key in held:
            out += _check_secret(lp, here + (key,), secret)
    for key in named:
        if isinstance(dest, S3Destination) and getattr(dest, key) is None:
            out.append(_finding(lp, here, f"no {key}: this role acts on the destination with that identity only"))
    return out


def _check_secret(lp: LoadedPolicy, path: tuple, secret: Path) -> list[LintFinding]:
    """The file must be a readable regular file; group/other access is a warning."""
    try:
        mode = secret.stat().st_mode
    except OSError as exc:
        return [_finding(lp, path, f"cannot read {secret}: {exc.strerror or exc}")]
    if not secret.is_file() or not os.access(secret, os.R_OK):
        return [_finding(lp, path, f"{secret} is not a regular file readable by this user")]
    if mode & 0o077:
        return [_finding(lp, path, f"{secret} is accessible by group or others (mode {mode & 0o777:04o}); "
                         f"run chmod 600 {secret}", "warning")]
    return []


def _check_target(lp: LoadedPolicy, i: int, target: Target, destinations: dict, seen: dict) -> list[LintFinding]:
    here = ("targets", i)
    out: list[LintFinding] = []
    if target.name in seen:
        out.append(_finding(lp, here + ("name",), f"target {target.name!r} is already defined at {seen[target.name]}"))
    else:
        seen[target.name] = f"{lp.path}:{lp.line_of(here + ('name',))}"
    if target.frequency > YEAR:
        out.append(_gap(lp, here + ("frequency",), f"every {fmt(target.frequency)} is rarer than the "
                        "guideline floor of once a year; use 1y or less"))
    if target.category == "container_data" and target.rto is None:
        out.append(_gap(lp, here + ("rto",), "container_data needs 'rto': the allowable cargo-handling "
                        "downtime that drills are judged against"))
    out += _check_retention(lp, here + ("retention",), target)
    out += _check_target_destinations(lp, here, target, destinations)
    out += _check_offline(lp, here, target, destinations)
    return out


def offline_destination(target: Target, destinations: dict) -> str | None:
    """The removable destination holding target's offline copies: offline.destination, else the only one."""
    if target.offline is None:
        return None
    if target.offline.destination is not None:
        return target.offline.destination
    removable = [n for n, d in destinations.items() if isinstance(d, RemovableDestination)]
    return removable[0] if len(removable) == 1 else None


def _check_offline(lp: LoadedPolicy, here: tuple, target: Target, destinations: dict) -> list[LintFinding]:
    """Removable destinations are reached through `offline`, never `destinations`; `offline` names one."""
    out = [_finding(lp, here + ("destinations", j), f"{name!r} is a removable destination, filled by `backupd "
                    "media sync` while a medium is attached; name it in 'offline' (with max_age) instead")
           for j, name in enumerate(target.destinations) if isinstance(destinations.get(name), RemovableDestination)]
    if target.offline is None:
        return out
    name = offline_destination(target, destinations)
    removable = sorted(n for n, d in destinations.items() if isinstance(d, RemovableDestination))
    if name is None:
        out.append(_finding(lp, here + ("offline",), "no removable destination to hold the offline copies" if not
                            removable else f"several removable destinations ({', '.join(removable)}); name one in "
                            "offline.destination"))
    elif not isinstance(destinations.get(name), RemovableDestination):
        out.append(_finding(lp, here + ("offline", "destination"), f"{name!r} is not a removable destination; "
                            f"known: {', '.join(removable) or '(none)'}"))
    else:
        source = destinations[name].copy_from
        if source is not None and source not in target.destinations:
            out.append(_finding(lp, here + ("offline",), f"removable destination {name!r} copies from {source!r}, "
                                "which this target does not list"))
    return out


def retention_reach(target: Target) -> timedelta:
    """How far back the keep rules reach: max over rules of count x max(rule period, frequency)."""
    ret, freq = target.retention, target.frequency
    return max(getattr(ret, rule) * max(period or freq, freq) for rule, period in KEEP_PERIODS.items())


def _suggest_keep(min_history: timedelta, freq: timedelta) -> str:
    """The keep rule that alone reaches ``min_history`` most tightly (ties: the fewest snapshots)."""
    options = []
    for rule, period in KEEP_PERIODS.items():
        effective = max(period or freq, freq)
        count = max(1, math.ceil(min_history / effective))
        options.append((count * effective, -effective, rule, count))
    _, _, rule, count = min(options)
    return f"{rule}: {count}"


def _check_retention(lp: LoadedPolicy, here: tuple, target: Target) -> list[LintFinding]:
    out: list[LintFinding] = []
    minimum = target.retention.min_history
    if minimum < MIN_HISTORY_ERROR:
        out.append(_gap(lp, here + ("min_history",), f"{fmt(minimum)} is shorter than 3w; malware can lie "
                        "dormant for weeks, keep generations from several weeks back (6w recommended)"))
    elif minimum < MIN_HISTORY_WARN:
        out.append(_finding(lp, here + ("min_history",), f"{fmt(minimum)} is shorter than the recommended 6w "
                            "(malware can lie dormant for weeks)", "warning"))
    reach = retention_reach(target)
    if reach < minimum:  # forget's --keep-within min_history still keeps min_history: a gap, not a danger
        out.append(_gap(lp, here, f"keep rules reach back only {fmt(reach)} at frequency "
                        f"{fmt(target.frequency)}, less than min_history {fmt(minimum)}; "
                        f"e.g. set {_suggest_keep(minimum, target.frequency)}"))
    return out


def _check_target_destinations(lp: LoadedPolicy, here: tuple, target: Target, destinations: dict) -> list[LintFinding]:
    out: list[LintFinding] = []
    for j, name in enumerate(target.destinations):
        if name not in destinations:
            known = ", ".join(destinations) or "(none)"
            out.append(_finding(lp, here + ("destinations", j), f"unknown destination {name!r}; known: {known}"))
    locked = [n for n in target.destinations
              if isinstance(destinations.get(n), S3Destination) and destinations[n].object_lock]
    if not locked:
        out.append(_finding(lp, here + ("destinations",), "needs at least one s3 destination with "
                            "object_lock: true (isolated, tamper-proof copy); local/offline ones may be added"))
    domains = {getattr(destinations.get(n), "failure_domain", None) for n in target.destinations}
    if len(target.destinations) > 1 and len(domains) == 1 and None not in domains:
        out.append(_finding(lp, here + ("destinations",), f"all destinations share failure_domain "
                            f"{domains.pop()!r}: one disaster or attack can take every copy (guideline 2.7.2)",
                            "warning"))
    return out


def _check_coverage(valid: list[LoadedPolicy]) -> list[LintFinding]:
    """Set-wide rules: one site, required categories, dev/eval system programs, network-device logs."""
    anchor = next((lp for lp in valid if lp.policy.targets), valid[0])
    at = ("targets",)
    out: list[LintFinding] = []
    sites = [(lp, lp.policy.site) for lp in valid if lp.policy.site is not None]
    if not sites:
        out.append(_finding(valid[0], ("site",), "no file defines 'site' (name and port of the terminal)"))
    for lp, site in sites[1:]:
        if site != sites[0][1]:
            out.append(_finding(lp, ("site",), f"conflicts with the site defined in {sites[0][0].path}"))
    targets = [t for lp in valid for t in lp.policy.targets]
    present = {t.category for t in targets}
    for category in REQUIRED_CATEGORIES:
        if category not in present:
            out.append(_gap(anchor, at, f"no target with category {category} (guideline 2.7.2 requires "
                            "system programs, container data and system logs)"))
    if not any(t.category == "system_program" and t.environment in ("development", "evaluation") for t in targets):
        out.append(_finding(anchor, at, "no system_program target for a development or evaluation environment "
                            "(guideline 2.7.2: system programs including dev/eval environments)", "warning"))
    if not any(t.category == "logs" and t.source == "network_device" for t in targets):
        out.append(_finding(anchor, at, "no logs target with source network_device (guideline M3: keep network "
                            "device and VPN router logs outside the system)", "warning"))
    return out
