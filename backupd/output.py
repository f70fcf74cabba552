"""Human output (rich tables on stderr-friendly consoles) and the single --json document."""

from __future__ import annotations

import json
import sys


def _consoles() -> dict:
    """`console` (stdout) and `err_console`, built on first use: importing rich costs ~0.2 s of start-up
    that a --json run, which prints no table, never needs. Assigned ones (tests) are kept."""
    names = globals()
    if "console" not in names or "err_console" not in names:
        from rich.console import Console

        # piped output is not squeezed to 80 columns: tables stay readable in logs and CI
        names.setdefault("console", Console(highlight=False, width=None if sys.stdout.isatty() else 160))
        names.setdefault("err_console", Console(stderr=True, highlight=False))
    return names


def __getattr__(name: str):
    if name in ("console", "err_console"):
        return _consoles()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def escape(text: str) -> str:
    """rich markup escaped (rich imported on first use)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def emit_json(doc: dict) -> None:
    """Print exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def human_bytes(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    """Print a table to stdout (plain when piped)."""
    from rich.table import Table

    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*[str(c) for c in row])
    _consoles()["console"].print(t)


def error(message: str) -> None:
    _consoles()["err_console"].print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def note(message: str) -> None:
    _consoles()["err_console"].print(message, markup=False, soft_wrap=True)


def busy(message: str, enabled: bool = True):
    """A spinner on stderr while a long step runs, only in a terminal."""
    from contextlib import nullcontext

    if not enabled:  # e.g. --json: rich is not even imported
        return nullcontext()
    err = _consoles()["err_console"]
    return err.status(message) if err.is_terminal else nullcontext()


class ProgressBars:
    """Progress bars on stderr for interactive runs; a no-op when stderr is not a terminal."""

    def __init__(self, enabled: bool | None = None):
        self.enabled = _consoles()["err_console"].is_terminal if enabled is None else enabled
        self._tasks: dict[str, object] = {}
        self._progress = None

    def __enter__(self) -> "ProgressBars":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

            self._progress = Progress("{task.description}", BarColumn(), TaskProgressColumn(),
                                      TimeElapsedColumn(), console=_consoles()["err_console"], transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, label: str, fraction: float) -> None:
        """Set the bar called label to fraction (0..1), creating it on first use."""
        if self._progress is None:
            return
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(escape(label), total=1.0)
        self._progress.update(self._tasks[label], completed=min(max(fraction, 0.0), 1.0))

    def callback(self):
        """A progress(target, destination, fraction) callable for actions, or None when disabled."""
        return (lambda target, dest, fraction: self.update(f"{target} -> {dest}", fraction)) if self.enabled else None
