"""Backup policies: schema (single source of truth), safe loader and guideline lint.

Entry points: ``lint_paths`` (for ``backupd policy lint``) and ``load_policy_set`` (everything else).
Names are imported lazily so ``python -m backupd.policy.schema`` runs without a double import.
"""

from importlib import import_module

_EXPORTS = {
    "parse_duration": "durations",
    "format_duration": "durations",
    "LintResult": "lint",
    "PolicySet": "lint",
    "lint_paths": "lint",
    "load_policy_set": "lint",
    "LintFinding": "loader",
    "LoadedPolicy": "loader",
    "load_policy_file": "loader",
    "DumpSource": "schema",
    "LocalDestination": "schema",
    "Medium": "schema",
    "Offline": "schema",
    "Policy": "schema",
    "RemovableDestination": "schema",
    "Retention": "schema",
    "S3Destination": "schema",
    "Site": "schema",
    "Sources": "schema",
    "Target": "schema",
    "json_schema": "schema",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'backupd.policy' has no attribute {name!r}")
    return getattr(import_module(f"backupd.policy.{_EXPORTS[name]}"), name)
