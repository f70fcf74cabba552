"""Rendering of reports for people: inline SVG charts (charts.py) and the operator's drill report
(drill_report.py). Pure functions from plain dicts to text; no I/O, no subprocess."""
