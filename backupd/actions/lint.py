"""`backupd policy lint`: schema and guideline findings as `file:line: field: message`."""

from __future__ import annotations

from pathlib import Path

from backupd import config as config_mod
from backupd import output
from backupd.errors import EXIT_CONFIG, EXIT_FINDING, EXIT_OK
from backupd.policy.lint import lint_paths


def _config(config_path: Path | None, need: bool) -> config_mod.Config:
    """The config when one is given or present; defaults when linting explicit files without one."""
    path = config_path or config_mod.default_path()
    if config_path is None and not path.exists() and not need:
        return config_mod.Config(path=None)
    return config_mod.load(path)


def run(files: tuple[Path, ...], config_path: Path | None, *, strict: bool, as_json: bool) -> int:
    """Lint files (or the config's policies); returns the exit code."""
    cfg = _config(config_path, need=not files)
    paths = list(files) if files else cfg.policy_files()
    result = lint_paths(paths, cfg.secrets_dir)
    code = EXIT_OK
    if result.unreadable:
        code = EXIT_CONFIG
    elif result.errors or (strict and result.warnings):
        code = EXIT_FINDING
    if as_json:
        output.emit_json({
            "ok": code == EXIT_OK, "exit_code": code,
            "files": [str(p.path) for p in result.policies],
            "findings": [{"file": f.file, "line": f.line, "field": f.field, "severity": f.severity,
                          "message": f.message} for f in result.findings],
        })
        return code
    for finding in result.findings:
        print(str(finding))
    summary = f"{len(result.policies)} file(s), {len(result.errors)} error(s), {len(result.warnings)} warning(s)"
    output.note(("clean: " if code == EXIT_OK else "") + summary)
    return code


