"""Storage commands: `backupd audit storage`, `extend-locks`, `keys ...`, `recover-repo`, `copy`."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies
from backupd.errors import EXIT_DEPENDENCY, EXIT_FINDING, EXIT_OK


def exit_for(results: list[dict], strict: bool = False) -> int:
    """3 when any destination was unreachable, 1 on any finding, else 0."""
    statuses = {r["status"] for r in results}
    if "unavailable" in statuses:
        return EXIT_DEPENDENCY
    warned = strict and any(not c["ok"] and c["severity"] == "warning" for r in results for c in r.get("checks", []))
    if statuses & {"finding", "failed"} or warned:
        return EXIT_FINDING
    return EXIT_OK


def _emit(title: str, results: list[dict], as_json: bool, code: int, columns: list[str]) -> int:
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    output.table(title, columns, [[str(r.get(c, "")) for c in columns] for r in results])
    for r in results:
        if r.get("error"):
            output.error(f"{r.get('destination')}: {r['error']}")
    return code


def _audit_report(results: list[dict], as_json: bool, strict: bool) -> int:
    code = exit_for(results, strict)
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "destinations": results})
        return code
    rows = [[r["destination"], c["name"], "ok" if c["ok"] else c["severity"].upper(), c["detail"]]
            for r in results for c in r.get("checks", [])]
    rows += [[r["destination"], "-", r["status"], r.get("error") or r.get("note", "")]
             for r in results if not r.get("checks")]
    output.table("storage audit", ["destination", "check", "result", "detail"], rows)
    return code


def register(main: click.Group) -> None:
    """Add this module's commands to main."""

    @main.group()
    def audit() -> None:
        """Audits of the backup storage."""

    @audit.command("storage")
    @click.option("--strict", is_flag=True, help="Warnings count as findings (exit 1).")
    @common
    def audit_storage(strict, config_path, as_json):
        """Verify Object Lock by configuration, readback and a delete canary on every S3 destination."""
        from backupd.actions import audit as action

        cfg = load_config(config_path)
        return _audit_report(action.run(cfg, load_policies(cfg)), as_json, strict)

    @main.command("extend-locks")
    @click.option("--destination", default=None, help="Only this destination.")
    @common
    def extend_locks(destination, config_path, as_json):
        """Extend retain-until of every live repository object to now + R and of every evidence object to
        now + evidence.retention (maintainer identity)."""
        from backupd.actions import extend as action

        cfg = load_config(config_path, writes="extend-locks")
        results = action.run(cfg, load_policies(cfg), destination)
        return _emit("extend-locks", results, as_json, exit_for(results),
                     ["destination", "status", "objects", "extended", "already", "until", "evidence_extended",
                      "evidence_until"])

    @main.command("recover-repo")
    @click.option("--destination", required=True, help="Destination whose repository was damaged.")
    @click.option("--as-of", "as_of", required=True, help="Point in time (ISO 8601, e.g. 2026-07-04T06:00Z).")
    @click.option("--to", "to_prefix", required=True, help="Clean key prefix in the same bucket.")
    @common
    def recover_repo(destination, as_of, to_prefix, config_path, as_json):
        """Rebuild the repository as it was at --as-of from object versions, then restic check it."""
        from backupd.actions import recover_repo as action

        cfg = load_config(config_path, writes="recover-repo")
        result = action.run(cfg, load_policies(cfg), destination, as_of, to_prefix)
        return _emit("recover-repo", [result], as_json, exit_for([result]),
                     ["destination", "status", "to", "copied", "deleted_then", "newer_ignored", "check"])

    _register_keys(main)


def _register_keys(main: click.Group) -> None:
    @main.group()
    def keys() -> None:
        """Repository passwords: generate, escrow to an offline recovery key, recover, rotate."""

    @keys.command("init")
    @common
    def keys_init(config_path, as_json):
        """Create a strong password_file (0600) for each destination that has none."""
        from backupd.actions import keys as action

        cfg = load_config(config_path, writes="keys init")
        results = action.init(cfg)
        return _emit("keys init", results, as_json, exit_for(results), ["destination", "status", "password_file"])

    @keys.command("escrow")
    @click.option("--recovery-public-key", "public_key", required=True, type=click.Path(path_type=Path),
                  help="X25519 public key (PEM) of the offline recovery key.")
    @common
    def keys_escrow(public_key, config_path, as_json):
        """Encrypt each destination's password to the recovery key; store locally and in the bucket."""
        from backupd.actions import keys as action

        cfg = load_config(config_path, writes="keys escrow")
        results = action.escrow(cfg, load_policies(cfg), public_key)
        return _emit("keys escrow", results, as_json, exit_for(results), ["destination", "status", "file", "mirrored"])

    @keys.command("recover")
    @click.option("--private-key", "private_key", required=True, type=click.Path(path_type=Path),
                  help="X25519 private key (PEM) of the offline recovery key.")
    @click.option("--out", "out_dir", default=None, type=click.Path(path_type=Path),
                  help="Write recovered passwords here (files 0600).")
    @common
    def keys_recover(private_key, out_dir, config_path, as_json):
        """Decrypt escrowed passwords and prove each opens its repository (restic cat config)."""
        from backupd.actions import keys as action

        cfg = load_config(config_path)
        results = action.recover(cfg, load_policies(cfg), private_key, out_dir)
        return _emit("keys recover", results, as_json, exit_for(results), ["destination", "status", "source", "opens"])

    @keys.command("rotate")
    @click.option("--recovery-public-key", "public_key", default=None, type=click.Path(path_type=Path),
                  help="Re-escrow the new passwords to this key.")
    @common
    def keys_rotate(public_key, config_path, as_json):
        """New password per password_file: restic key add, verify, replace the file, key remove old."""
        from backupd.actions import keys as action

        cfg = load_config(config_path, writes="keys rotate")
        results = action.rotate(cfg, load_policies(cfg), public_key)
        return _emit("keys rotate", results, as_json, exit_for(results),
                     ["password_file", "status", "destinations", "removed_key"])
