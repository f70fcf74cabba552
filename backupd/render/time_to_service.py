"""The whole terminal's projected time to service (actions/time_to_service.py's document) as one line."""

from __future__ import annotations


def describe(doc: dict) -> str:
    """One line: the terminal's projected time to service against the allowable downtime."""
    text = f"whole terminal: projected time to service {_hours(doc['seconds'])}"
    if doc["allowable_downtime_seconds"]:
        text += (f" = {doc['share']:.0%} of the allowable downtime {_hours(doc['allowable_downtime_seconds'])}"
                 f" ({doc['verdict']})")
    else:
        text += " (the site sets no allowable_downtime)"
    if doc["worst_measured_error"] is not None:
        text += f"; largest measured projection error {doc['worst_measured_error']:+.0%}"
    if doc["missing"]:
        text += f"; not counted, never drilled: {', '.join(doc['missing'])}"
    return text + f"; rule: {doc['rule']}"


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.1f}min" if seconds < 7200 else f"{seconds / 3600:.2f}h"
