"""`backupd incident ...`: incident mode for the CISO/CSIRT."""

from __future__ import annotations

from pathlib import Path

import click

from backupd import output
from backupd.commands.common import common, load_config, load_policies


def _emit(doc: dict, as_json: bool, text: str) -> None:
    if as_json:
        output.emit_json({"ok": True, **doc})
    else:
        output.note(text)


@click.group()
def incident() -> None:
    """Incident mode: freeze retention, preserve evidence, restore from a clean point."""


@incident.command("start")
@click.option("--reason", required=True, help="What was observed (goes into the timeline).")
@common
def start(reason, config_path, as_json):
    """Open an incident: forget and prune refuse to run until it ends, on every host that reads the bucket."""
    from backupd.actions import incident as action

    cfg = load_config(config_path, writes="incident start")
    inc = action.start(cfg, reason, load_policies(cfg))
    where = ", ".join(f"{m['bucket']}/{m['key']}" for m in inc.get("markers", []))
    _emit(inc, as_json, f"incident {inc['id']} open since {inc['started']}; retention frozen"
          + (f" (freeze marker: {where})" if where else " (no Object-Lock bucket: the freeze is local to this host)"))


@incident.command("note")
@click.argument("text")
@common
def note(text, config_path, as_json):
    """Add a line to the incident timeline (decisions, calls made, findings)."""
    from backupd.actions import incident as action

    cfg = load_config(config_path)
    load_policies(cfg)
    _emit(action.note(cfg, "note", {"text": text}), as_json, "noted")


@incident.command("preserve")
@click.option("--path", "paths", multiple=True, required=True, help="Compromised path to preserve (repeatable).")
@click.option("--destination", default=None, help="Destination whose bucket holds the forensic repository.")
@common
def preserve(paths, destination, config_path, as_json):
    """Snapshot the compromised state to a separate forensic repository before restoring."""
    from backupd.actions import incident as action

    cfg = load_config(config_path, writes="incident preserve")
    entry = action.preserve(cfg, load_policies(cfg), list(paths), destination)
    _emit(entry, as_json, f"preserved {', '.join(paths)} as snapshot {entry['snapshot_id']} in {entry['repository']}")


@incident.command("restore")
@click.option("--to", "to_dir", required=True, type=click.Path(path_type=Path), help="Directory to restore into.")
@click.option("--before", default=None, help="Restore points before this time (default: incident start).")
@click.option("--keep-setuid", is_flag=True, help="Keep the setuid/setgid bits of restored files (cleared by "
              "default: the backup is untrusted); they are still listed as warnings.")
@click.option("--destination", default=None, help="Destination or medium to restore from (a medium: the targets "
              "with offline copies on it); default: first destination, an attached medium when S3 is down.")
@common
def restore(to_dir, before, keep_setuid, destination, config_path, as_json):
    """Restore every target in restore order from clean points, verified, then print the checklist."""
    from backupd.actions import incident as action
    from backupd.render.results import exit_for

    cfg = load_config(config_path)
    result = action.restore_all(cfg, load_policies(cfg), to_dir, before, keep_setuid, destination)
    code = exit_for([result["status"]])
    if as_json:
        output.emit_json({"ok": code == 0, "exit_code": code, **result})
        return code
    for r in result["results"]:
        probe = f" (probes {r['probe_verdict']})" if r.get("probe_verdict") else ""
        output.note(f"{r['target']}: {r['status']}{probe}: {r.get('explanation') or r.get('error')}")
        for warning in r.get("warnings", []):
            output.error(f"  warning: {warning}")
    output.note("\nBefore resuming operations, sign off (backupd incident note 'signed off: ...'):")
    for item in result["checklist"]:
        output.note(f"  [ ] {item['item']}")
    return code


@incident.command("report")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the Markdown report here.")
@click.option("--incident", "incident_id", default=None, help="Incident id (default: open or newest).")
@common
def report_cmd(out, incident_id, config_path, as_json):
    """The incident timeline for the regulator and the police."""
    from backupd.actions import incident as action

    cfg = load_config(config_path)
    entries = action.timeline(cfg, incident_id)
    text = action.report_markdown(entries)
    if out:
        out.write_text(text, encoding="utf-8")
    if as_json:
        output.emit_json({"ok": True, "entries": entries, "out": str(out) if out else None})
    elif not out:
        print(text)


@incident.command("end")
@click.option("--summary", required=True, help="How it ended (goes into the timeline).")
@common
def end(summary, config_path, as_json):
    """Close the incident (a "closed" marker version in every WORM bucket); retention runs again."""
    from backupd.actions import incident as action

    cfg = load_config(config_path, writes="incident end")
    inc = action.end(cfg, summary, load_policies(cfg))
    _emit(inc, as_json, f"incident {inc['id']} ended at {inc['ended']}")


def register(main: click.Group) -> None:
    main.add_command(incident)


