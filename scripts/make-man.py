"""Regenerate the man pages in man/ from the CLI's own click help, with click-man (one page per command).

    .venv/bin/python scripts/make-man.py [DIR]

Pages follow click-man's layout: backupd.1, then backupd-<group>-<command>.1 for every command, as
`man backupd-drill`. Subcommands are listed sorted, as `backupd --help` lists them, so the pages do not depend
on the order in which the command modules register. The date in `.TH` is the day the text last changed: an
unchanged CLI leaves every file untouched (tests/unit/test_man_pages.py regenerates with the committed date and
compares). Stale pages of removed commands are deleted.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.metadata
import os
import re
import sys
from pathlib import Path

import click
from click_man.core import generate_man_page

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "man"
_TH_DATE = re.compile(r'^\.TH "[^"]*" "1" "(\d{4}-\d{2}-\d{2})"')


def _sorted(command: click.Command) -> click.Command:
    """A copy of a group whose subcommands (recursively) are in name order; other commands as they are."""
    if not isinstance(command, click.Group):
        return command
    group = copy.copy(command)
    group.commands = {name: _sorted(sub) for name, sub in sorted(command.commands.items())}
    return group


def render(cli: click.Command, name: str, version: str, date: str) -> dict[str, str]:
    """Every page as {file name: roff text}: the command, then each visible subcommand, recursively."""
    pages: dict[str, str] = {}

    def walk(command: click.Command, info_name: str, parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=info_name, parent=parent)
        pages[ctx.command_path.replace(" ", "-") + ".1"] = generate_man_page(ctx, version=version, date=date)
        for sub_name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                walk(sub, sub_name, ctx)

    walk(_sorted(cli), name, None)
    return pages


def committed_date(directory: Path, name: str = "backupd") -> str | None:
    """The `.TH` date of the top page in directory, None when there is none."""
    page = directory / f"{name}.1"
    if not page.is_file():
        return None
    match = _TH_DATE.match(page.read_text(encoding="utf-8"))
    return match.group(1) if match else None


def current(directory: Path, name: str = "backupd") -> dict[str, str]:
    """The pages as they are in directory."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(directory.glob(f"{name}*.1"))}


def today() -> str:
    """UTC today, or SOURCE_DATE_EPOCH's day for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%d")


def main(argv: list[str]) -> int:
    from backupd.cli import main as cli

    directory = Path(argv[0]) if argv else DEFAULT_DIR
    version = importlib.metadata.version("backupd")
    old = current(directory) if directory.is_dir() else {}
    date = committed_date(directory)
    if date and render(cli, "backupd", version, date) == old:
        print(f"make-man: {len(old)} pages in {directory} are up to date")
        return 0
    pages = render(cli, "backupd", version, today())
    directory.mkdir(parents=True, exist_ok=True)
    for stale in set(old) - set(pages):
        (directory / stale).unlink()
    for file_name, text in pages.items():
        if old.get(file_name) != text:
            (directory / file_name).write_text(text, encoding="utf-8")
    print(f"make-man: wrote {len(pages)} pages to {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
