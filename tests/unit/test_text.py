"""backupd.text.printable: the one helper that makes untrusted text safe to show."""

from __future__ import annotations

import re
from pathlib import Path

from backupd.text import printable


def test_printable_replaces_controls_and_non_ascii_and_bounds_the_length():
    assert printable("search_path=evil\x1b[31m\n\u202e\x9b, public") == "search_path=evil?[31m???, public"
    assert printable("x" * 500) == "x" * 200 and printable("abcdef", 3) == "abc"
    assert printable("") == ""


def test_the_postgres_modules_keep_no_copy_of_the_unprintable_pattern():
    root = Path(__file__).resolve().parents[2] / "backupd"
    mine = ("actions/restore_database.py", "probes/postgres.py", "sources/pgload.py", "sources/pgcount.py")
    copies = [name for name in mine if re.search(r"_UNPRINTABLE\s*=|x20-\\x7e", (root / name).read_text())]
    assert not copies, f"use backupd.text.printable instead: {copies}"
