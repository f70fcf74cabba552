"""Turn action results into human tables or the --json document, and into an exit code (the CLI contract:
0 ok, 1 finding, 2 usage/configuration, 3 dependency unavailable)."""

from __future__ import annotations

from backupd import output
from backupd.output import escape  # rich is loaded on first use, never for --json
from backupd.errors import EXIT_CONFIG, EXIT_DEPENDENCY, EXIT_FINDING, EXIT_OK
from backupd.render.time_to_service import describe as describe_terminal


def exit_for(statuses: list[str]) -> int:
    """0 when all ok; 2 when any item is misconfigured (wrong keys or password: nothing works until fixed);
    3 when any item could not reach a dependency; 1 otherwise."""
    if all(s == "ok" for s in statuses):
        return EXIT_OK
    if any(s == "misconfigured" for s in statuses):
        return EXIT_CONFIG
    if any(s == "unavailable" for s in statuses):
        return EXIT_DEPENDENCY
    return EXIT_FINDING


def _change_cell(facts: dict) -> str:
    """The change against the previous generation: SUSPECT, or files added/changed/removed."""
    change = facts.get("change")
    if not change:
        return "-"  # first generation, or a dump without row counts
    if change.get("suspicious"):
        return "SUSPECT"
    if "added" in change and change.get("previous_files") and "rows" not in facts:
        return f"+{change['added']} ~{change['changed']} -{change['removed']}"
    return "normal"


def backup_results(results, as_json: bool, stopped: int | None = None) -> int:
    """The backup table (or JSON); `stopped` (128 + signal) overrides the exit code of a cancelled run."""
    code = stopped or exit_for([r.status for r in results])
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": [r.to_dict() for r in results]})
        return code
    rows = [[r.target, r.category, r.destination, r.status, (r.snapshot_id or "-")[:8], r.files,
             output.human_bytes(r.bytes), output.human_bytes(r.data_added), _change_cell(r.facts),
             f"{r.duration:.1f}s"] for r in results]
    output.table("backup", ["target", "category", "destination", "status", "snapshot", "files", "bytes",
                            "added", "change", "duration"], rows)
    for r in results:
        if r.error:
            output.error(f"{r.target} -> {r.destination}: {r.error}")
        for n in r.notes:
            output.note(f"  {r.target}: {n}")
    return code


def forget_results(results, as_json: bool) -> int:
    code = exit_for([r["status"] for r in results])
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    rows = [[r["target"], r["destination"], r["status"], len(r.get("keep", [])), len(r.get("remove", [])),
             r.get("error") or ""] for r in results]
    output.table("retention (forget)", ["target", "destination", "status", "kept", "forgotten", "note"], rows)
    return code


def copy_results(results: list[dict], as_json: bool) -> int:
    code = exit_for([r["status"] for r in results])
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    output.table("copy", ["target", "from", "to", "status", "snapshots copied", "duration", "note"],
                 [[r["target"], r["source"], r["destination"], r["status"], len(r["copied"]),
                   f"{r['duration']:.1f}s", r.get("error") or ""] for r in results])
    return code


def prune_results(results: list[dict], as_json: bool) -> int:
    code = exit_for([r["status"] for r in results])
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    output.table("prune", ["destination", "status", "locks extended", "report / note"],
                 [[r["destination"], r["status"], r.get("extend_locks", "-"),
                   r.get("error") or " / ".join(r.get("report", [])[-2:])] for r in results])
    return code


def check_results(results: list[dict], as_json: bool, stopped: int | None = None) -> int:
    """The check table (or JSON); `stopped` (128 + signal) overrides the exit code of a cancelled run."""
    statuses = [r["status"] for r in results]
    code = stopped or (EXIT_OK if all(s == "ok" for s in statuses) else EXIT_CONFIG if "misconfigured" in statuses
                       else EXIT_FINDING if "failed" in statuses else EXIT_DEPENDENCY)  # unavailable or busy
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "results": results})
        return code
    output.table("check (read-data rotation)", ["destination", "slice", "status", "coverage", "repository"],
                 [[r["destination"], r.get("slice", "-"), r["status"],
                   f"{r['coverage']:.0%}" if "coverage" in r else "-",
                   output.human_bytes(r.get("repository_bytes", 0))] for r in results])
    for r in results:
        if r.get("error"):
            output.error(r["error"])
        if r.get("note"):
            output.note(f"{r['destination']}: {r['note']}")
    return code


def lint_results(result, strict: bool, as_json: bool) -> int:
    """`policy lint`: one `file:line: field: message` per finding (or JSON); 2 when a file is unreadable,
    1 on errors, guideline gaps or (strict) warnings."""
    code = EXIT_OK
    if result.unreadable:
        code = EXIT_CONFIG
    elif result.errors or result.gaps or (strict and result.warnings):
        code = EXIT_FINDING
    if as_json:
        output.emit_json({
            "ok": code == EXIT_OK, "exit_code": code,
            "files": [str(p.path) for p in result.policies],
            "findings": [{"file": f.file, "line": f.line, "field": f.field, "severity": f.severity,
                          "gap": f.gap, "message": f.message} for f in result.findings],
        })
        return code
    for finding in result.findings:
        print(str(finding))
    summary = f"{len(result.policies)} file(s), {len(result.errors)} error(s), {len(result.warnings)} warning(s)"
    output.note(("clean: " if code == EXIT_OK else "") + summary)
    return code


def restore_result(result: dict, as_json: bool) -> int:
    code = EXIT_OK if result["status"] == "ok" else EXIT_FINDING
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, **result})
        return code
    output.note(result["explanation"])
    v = result["verification"]
    output.note(f"restored {result['target']} snapshot {result['snapshot_id'][:8]} to {result['to']}: "
                f"{v['verified']} file(s) verified, {len(v['mismatched'])} mismatched, "
                f"{len(v['missing'])} missing, in {result['duration']:.1f}s")
    for kind in ("mismatched", "missing"):
        for path in v[kind][:20]:
            output.error(f"{kind}: {path}")
    for warning in result.get("warnings", []):
        output.error(f"warning: {warning}")
    return code


def restore_database_result(result: dict, as_json: bool) -> int:
    code = EXIT_OK if result["status"] == "ok" else EXIT_FINDING
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, **result})
        return code
    output.note(result["explanation"])
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in result.get("phases", {}).items())
    output.note(f"loaded {result['target']} snapshot {result['snapshot_id'][:8]} ({result['format']} dump, "
                f"{result['jobs']} job(s)) into database {result['into_database']}: {len(result['rows'])} "
                f"table(s) compared, {len(result['problems'])} problem(s) ({phases})")
    for warning in result.get("warnings", []):
        output.error(f"warning: {warning}")
    for problem in result["problems"][:20]:
        output.error(problem)
    return code


def accept_result(result: dict, as_json: bool) -> int:
    if as_json:
        output.emit_json({"ok": True, "exit_code": EXIT_OK, **result})
        return EXIT_OK
    where = ", ".join(f"{d} {sid[:8]}" for d, sid in result["snapshots"].items())
    state = "was flagged suspect" if result["was_flagged"] else "was not flagged"
    output.note(f"accepted {result['target']} ({where}; it {state}) by {result['operator']}: {result['reason']}")
    output.note("later generations are judged against this one; the acceptance is recorded as evidence")
    return EXIT_OK


#: rich styles of the status table's state and drill cells (dropped by rich when not a terminal).
STATE_STYLES = {"ok": "green", "pass": "green", "warn": "yellow", "stale": "yellow", "finding": "bold red",
                "suspect": "bold red", "drill failed": "bold red", "check failed": "bold red",
                "failed": "bold red", "fail": "bold red", "never": "red", "unavailable": "magenta"}


def needs_attention(row: dict) -> bool:
    """True when anything but a drill WARN is wrong with the target (see actions/status.py overall)."""
    return row.get("state", row["status"]) not in ("ok", "warn")


def _styled(text: str, key: str | None) -> str:
    style = STATE_STYLES.get((key or "").lower())
    return f"[{style}]{text}[/]" if style else text


def _drill_cell(r: dict) -> str:
    if not r.get("drill_status"):
        return "never"
    seconds, budget = r.get("drill_ready_seconds"), r.get("rto_seconds")
    ready = f" {_seconds(seconds)}" if seconds is not None else ""
    share = f" ({seconds / budget:.0%})" if seconds is not None and budget else ""
    return _styled(f"{r['drill_verdict'] or r['drill_status']}{ready}/{r.get('rto') or '-'}{share}", r["drill_status"])


def _projected_cell(r: dict) -> str:
    """Projected time to ready at the newest backup's size / RTO, and the measured error of the newest pair."""
    seconds, budget = r.get("projected_ready_seconds"), r.get("rto_seconds")
    if seconds is None:
        return "-"
    share = f" ({seconds / budget:.0%})" if budget else ""
    paired = r.get("projection_error") or {}
    measured = f" err {paired['error']:+.0%}" if paired.get("error") is not None else " err ?"
    return f"{_seconds(seconds)}/{r.get('rto') or '-'}{share}{measured}"


def _seconds(value: float) -> str:
    """Enough precision that a WARN close to the RTO never reads like a pass (2.45s, 41.3s, 5400s)."""
    return f"{value:.2f}s" if value < 10 else f"{value:.1f}s" if value < 100 else f"{value:.0f}s"


def status_rows(rows: list[dict], as_json: bool, terminal: dict | None = None, mirror: dict | None = None,
                foreign: list[dict] | None = None, media: list[dict] | None = None) -> int:
    """The status table, then the whole terminal's projected time to service (time_to_service) and the
    evidence mirror's lag (evidence/lag.py; a stale one needs attention like a failed target); `media`:
    the newest check of each medium on this verifier (a failed one needs attention until a clean check)."""
    stale = bool(mirror and (mirror["unmirrored_stale"] or mirror["checkpoint_stale"]))
    bad_media = [m for m in media or [] if m["status"] != "clean"]
    code = exit_for(["failed" if needs_attention(r) else "ok" for r in rows] + (["failed"] if stale else [])
                    + (["failed"] if foreign else [])  # objects planted in this host's evidence prefix
                    + (["failed"] if bad_media else []))
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "targets": rows,
                          **({"terminal": terminal} if terminal is not None else {}),
                          **({"evidence_mirror": mirror} if mirror is not None else {}),
                          **({"evidence_foreign_objects": foreign} if foreign else {}),
                          **({"media_checks": media} if media else {})})
        return code
    output.table("status", ["target", "category", "last backup", "age", "RPO", "verified RPO",
                            "drill ready/RTO", "projected/RTO", "WORM", "check", "next due", "state"],
                 [[escape(r["target"]), r["category"], r["last_snapshot"] or "-", r["age"] or "-", r["rpo"],
                   r["verified_rpo"] or "-", _drill_cell(r), _projected_cell(r),
                   _styled(r["immutability"], r["immutability"]),
                   f"{r['check_coverage']:.0%}" if r["check_coverage"] is not None else "-",
                   r["next_due_in"] or "-", _styled(r.get("state", r["status"]), r.get("state", r["status"]))]
                  for r in rows])
    if terminal is not None:
        output.note(describe_terminal(terminal))
    for r in rows:
        for reason in r.get("state_reasons", []):
            output.note(f"{r['target']}: {reason}")
        if r.get("offline_status") == "ok":
            output.note(f"{escape(r['target'])}: offline copy on {escape(str(r['offline_medium']))}, "
                        f"{_span(r['offline_age_seconds'])} old (max {r['offline_max_age']})")
    if mirror is not None:
        (output.error if stale else output.note)(describe_mirror(mirror))
    for m in media or []:
        (output.note if m["status"] == "clean" else output.error)(
            f"medium {escape(str(m['medium']))} ({escape(str(m['uuid'] or '-'))}): {m['status']} at its check of "
            f"{m['time']}" + ("" if m["status"] == "clean" else
                              f", {m['findings']} finding(s) (record #{m['seq']}): keep it out of restores and "
                              "the rotation until `backupd media verify` checks it clean"))
    for obj in foreign or []:
        output.error(f"evidence mirror: {escape(str(obj.get('key')))} (sha256 {str(obj.get('sha256'))[:16]}, "
                     f"{obj.get('size')} bytes) was written by another identity into this host's prefix; confine "
                     f"the writers, then `backupd evidence acknowledge --reason TEXT`")
    return code


def describe_mirror(lag: dict) -> str:
    """One line: what is not yet in the evidence mirror and how old the newest signed checkpoint is."""
    pending = (f"{lag['unmirrored_records']} record(s) not yet mirrored, the oldest "
               f"{_span(lag['unmirrored_oldest_age_seconds'])} old" if lag["unmirrored_records"]
               else "every record mirrored")
    cp = f"newest checkpoint {_span(lag['checkpoint_age_seconds'])} old" if lag["checkpoint_time"] else "no checkpoint yet"
    stale = " - STALE" if lag["unmirrored_stale"] or lag["checkpoint_stale"] else ""
    return (f"evidence mirror {escape(lag['mirror'])} (host {escape(lag['host'])}): {pending}; {cp} (period "
            f"{_span(lag['checkpoint_period_seconds'])}, stale after {_span(lag['stale_after_seconds'])}){stale}")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def drill_exit_code(reports: list[dict]) -> int:
    """0 when every drill passed or warned, 2 on a configuration error (keys, password), 3 when a
    dependency was unavailable, else 1."""
    if all(r["status"] == "ok" for r in reports):
        return EXIT_OK
    if any(r["status"] == "misconfigured" for r in reports):
        return EXIT_CONFIG
    if any(r["status"] == "unavailable" for r in reports) and \
            not any(r["status"] == "failed" for r in reports):
        return EXIT_DEPENDENCY
    return EXIT_FINDING


def drill_results(reports: list[dict], as_json: bool) -> int:
    """Print the drill reports (table + details, or one JSON document); returns the exit code."""
    code = drill_exit_code(reports)
    if as_json:
        output.emit_json({"ok": code == EXIT_OK, "exit_code": code, "drills": reports})
        return code
    rows = []
    for r in reports:
        ph = r.get("phases", {})
        rows.append([r["target"], r["kind"], (r.get("snapshot_id") or "-")[:8],
                     f"{r.get('files_restored', 0)}/{r.get('total_files', '-')}",
                     *(f"{ph.get(p, 0):.1f}s" for p in ("select", "restore", "verify", "probes")),
                     f"{r.get('service_ready_seconds', 0) or 0:.1f}s",
                     f"{r['rto_seconds']:.0f}s" if r.get("rto_seconds") else "-", r["verdict"]])
    output.table("restore drill", ["target", "kind", "snapshot", "files", "select", "restore", "verify",
                                   "probes", "ready", "RTO", "verdict"], rows)
    for r in reports:
        output.note(f"{r['target']}: {r['verdict']}: {r.get('reason', '')}")
        for u in r.get("unannounced") or []:  # verifier: a snapshot the backup host never announced
            output.error(f"{r['target']}: snapshot {u['snapshot_id'][:8]} ({u['time']}, host {u['host']}) is in "
                         f"the repository but not counted: {u['why']}")
        for p in r["probes"]:
            output.note(f"  {p['kind']} probe: {p['status']}" + (f" ({'; '.join(p['problems'][:3])})"
                                                                 if p["problems"] else ""))
        if (r.get("limits") or {}).get("note"):  # no cgroup for the drill: only the unit bounds it
            output.note(f"  limits: {r['limits']['note']}")
    return code
