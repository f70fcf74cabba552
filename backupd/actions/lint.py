"""`backupd policy lint`: schema, guideline and drill-spec findings (render/results.py prints them as
`file:line: field: message` and maps them to the exit code)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from backupd import config as config_mod
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


def run(files: tuple[Path, ...], config_path: Path | None):
    """Lint files (or the config's policies) and their drill specs; the LintResult (render/results.py
    turns it into the findings list and the exit code)."""
    cfg = _config(config_path, need=not files)
    paths = list(files) if files else cfg.policy_files()
    result = lint_paths(paths, cfg.secrets_dir, held=cfg.secrets_held())
    result.findings += drill_findings(result, cfg.restore_tests or default_restore_tests(paths))
    return result
