"""`backupd backup`, `copy`, `forget`, `prune`, `restore` and `accept`: registered on the main command group."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies, snapshot_arg, stopped
from backupd.process import execute


def register(main: click.Group) -> None:
    """Add this module's commands to main."""

    @main.command()
    @click.option("--target", "target_name", default=None, help="Back up only this target.")
    @common
    def backup(target_name, config_path, as_json):
        """Back up targets to their destinations, recording manifests and source facts."""
        from backupd.actions import backup as action
        from backupd.render import results as report

        cfg = load_config(config_path, writes="backup")
        policy_set = load_policies(cfg)
        with execute.cancel_on_signals() as stop, output.ProgressBars(enabled=None if not as_json else False) as bars:
            results = action.run(cfg, policy_set, target_name, cancel=stop, progress=bars.callback())
        return report.backup_results(results, as_json, stopped(stop))

    @main.command()
    @click.option("--target", "target_name", default=None, help="Copy only this target.")
    @common
    def copy(target_name, config_path, as_json):
        """Fill destinations marked copy_from with restic copy from their primary."""
        from backupd.actions import copy as action
        from backupd.render import results as report

        cfg = load_config(config_path, writes="copy")
        return report.copy_results(action.run(cfg, load_policies(cfg), target_name), as_json)

    @main.command()
    @click.option("--target", "target_name", default=None, help="Apply retention to this target only.")
    @click.option("--dry-run", is_flag=True, help="Show what would be forgotten.")
    @common
    def forget(target_name, dry_run, config_path, as_json):
        """Apply retention (restic forget, guarded by --keep-within min_history). Never prunes."""
        from backupd.actions import retention
        from backupd.render import results as report

        cfg = load_config(config_path, writes="forget")
        results = retention.run(cfg, load_policies(cfg), target_name, dry_run=dry_run)
        return report.forget_results(results, as_json)

    @main.command()
    @click.option("--destination", default=None, help="Prune only this destination.")
    @click.option("--dry-run", is_flag=True, help="Show what would be removed.")
    @common
    def prune(destination, dry_run, config_path, as_json):
        """restic prune with the maintenance identity, then extend the locks of what remains."""
        from backupd.actions import retention
        from backupd.render import results as report

        cfg = load_config(config_path, writes="prune")
        return report.prune_results(retention.prune(cfg, load_policies(cfg), destination, dry_run), as_json)

    @main.command()
    @click.option("--target", "target_name", required=True, help="Target to restore.")
    @click.option("--to", "to_dir", default=None, type=click.Path(path_type=Path), help="Directory to restore into.")
    @click.option("--into-database", "into_database", default=None, metavar="NAME|DSN",
                  help="Load a pg_dump target into this existing, empty PostgreSQL database instead.")
    @click.option("--db-host", default=None, help="With --into-database NAME: host or socket directory.")
    @click.option("--db-port", default=None, type=int, help="With --into-database NAME: port.")
    @click.option("--db-user", default=None, help="With --into-database NAME: user (the database's owner, "
                  "not a superuser).")
    @click.option("--db-password-file", default=None, type=click.Path(path_type=Path),
                  help="With --into-database: file (mode 0600) holding the password (else PGPASSFILE or ~/.pgpass); "
                       "a DSN carrying a password is refused.")
    @click.option("--allow-superuser", is_flag=True,
                  help="With --into-database: load even as a role that can run programs on the database server "
                       "(superuser, CREATEROLE, pg_execute_server_program, ...); the dump is untrusted.")
    @click.option("--jobs", default=None, type=click.IntRange(1, 64),
                  help="Parallel pg_restore jobs for a custom-format dump (default: CPU count).")
    @click.option("--snapshot", "snapshot_id", default=None, help="Snapshot id (default: newest complete).")
    @click.option("--before", default=None, help="Newest snapshot before this time (ISO 8601).")
    @click.option("--destination", default=None, help="Destination or medium to restore from (default: first; an "
                  "attached medium of the target's rotation set when that S3 destination is unreachable).")
    @click.option("--force", is_flag=True, help="Allow restoring into a non-empty directory or database.")
    @click.option("--keep-setuid", is_flag=True, help="With --to: keep the setuid/setgid bits of restored files "
                  "(cleared by default: the backup is untrusted); they are still listed as warnings.")
    @common
    def restore(target_name, to_dir, into_database, db_host, db_port, db_user, db_password_file, allow_superuser,
                jobs, snapshot_id, before, destination, force, keep_setuid, config_path, as_json):
        """Restore a target and verify every file against the backup-time manifest (or load a database dump
        into a database and compare its row counts)."""
        from backupd.actions import restore as action
        from backupd.actions import restore_database
        from backupd.errors import ConfigError
        from backupd.render import results as report

        if (to_dir is None) == (into_database is None):
            raise ConfigError("give exactly one of --to DIR or --into-database NAME|DSN")
        snapshot_id = snapshot_arg(snapshot_id)
        cfg = load_config(config_path)
        if into_database is not None:
            database = restore_database.Database.parse(into_database, db_host, db_port, db_user, db_password_file)
            result = restore_database.run(cfg, load_policies(cfg), target_name, database, snapshot_id=snapshot_id,
                                          before=before, destination=destination, force=force, jobs=jobs,
                                          allow_superuser=allow_superuser)
            return report.restore_database_result(result, as_json)
        result = action.run(cfg, load_policies(cfg), target_name, to_dir, snapshot_id=snapshot_id,
                            before=before, destination=destination, force=force, keep_setuid=keep_setuid)
        return report.restore_result(result, as_json)

    @main.command()
    @click.option("--target", "target_name", required=True, help="Target whose generation is accepted.")
    @click.option("--snapshot", "snapshot_id", required=True, help="Snapshot id of the flagged generation.")
    @click.option("--reason", required=True, help="Why the change is legitimate (kept as evidence).")
    @common
    def accept(target_name, snapshot_id, reason, config_path, as_json):
        """Accept a generation flagged suspect as a legitimate change: the new clean reference."""
        from backupd.actions import accept as action
        from backupd.render import results as report

        snapshot_id = snapshot_arg(snapshot_id)
        cfg = load_config(config_path, writes="accept")
        return report.accept_result(action.run(cfg, load_policies(cfg), target_name, snapshot_id, reason), as_json)
