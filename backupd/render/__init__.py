"""Rendering for people: functions from plain data (dicts, lists) to text, HTML, CSV or bytes; no files, no
network, no subprocess, no import of actions/, engine/, execute, storage/ (tests/unit/test_layering.py).
Only results writes, to the terminal through backupd.output.

results (CLI tables / --json and the exit code of each command), evidence_html (an export's report.html),
estate (estate.csv / estate.html of `evidence pull --all-hosts`), runbook (runbook.md / runbook.html),
drill_report (the operator's drill report), time_to_service (the terminal's projection in one line),
charts (inline SVG), html (shared page style and table helpers)."""
