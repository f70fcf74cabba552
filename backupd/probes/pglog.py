"""The post-load phase of a dump load, read from the throw-away server's statement log: the wall-clock
span of the statements that build indexes, constraints and triggers after the data is in (pg_dump's
post-data section, in a plain dump as in an archive; with pg_restore -j they run in parallel, so the
span is taken from timestamps, not by summing durations). The drill projection scales load and post-load
separately (backupd.drill.projection)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

#: Server settings that make every statement's end time and duration appear on stderr.
CONF = "log_min_duration_statement = 0\nlog_line_prefix = '%m '\n"
_ENTRY = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \S+ LOG:\s+duration: ([0-9.]+) ms\s+"
                    r"statement: (.*)$")
_POST = re.compile(r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX|ALTER\s+TABLE\s.*\bADD\s+CONSTRAINT|CREATE\s+"
                   r"(CONSTRAINT\s+)?TRIGGER|CLUSTER\s)", re.IGNORECASE | re.DOTALL)


def _entries(log: str):
    """(end time, duration seconds, statement text) per logged statement; continuation lines joined."""
    current = None
    for line in log.splitlines():
        match = _ENTRY.match(line)
        if match:
            if current:
                yield current
            end = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f" if "." in match.group(1)
                                    else "%Y-%m-%d %H:%M:%S")
            current = [end, float(match.group(2)) / 1000, match.group(3)]
        elif current and line[:1].isspace():
            current[2] += " " + line.strip()
        elif current:
            yield current
            current = None
    if current:
        yield current


def post_load_seconds(log: str) -> float:
    """Seconds from the first post-data statement's start to the last one's end; 0 when none is logged."""
    spans = [(end - timedelta(seconds=took), end) for end, took, sql in _entries(log) if _POST.match(sql)]
    if not spans:
        return 0.0
    return round((max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds(), 3)
