"""The library's one voice: status lines and progress bars go through here (rich, to stderr),
so library code never calls print and the CLI can keep stdout for results."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


def set_quiet(quiet: bool):
    global _quiet
    _quiet = quiet


def info(message: str):
    if not _quiet:
        console.print(message)


def warn(message: str):
    console.print(f"[yellow]warning:[/yellow] {message}")


@contextlib.contextmanager
def progress(description: str, total: int | None):
    """A progress bar; yields ``advance(n=1, **fields)``.  Silent when quiet or not a TTY
    other than a final line, so logs stay readable in CI."""
    if _quiet or not sys.stderr.isatty():
        yield lambda n=1, **fields: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(n=1, **fields):
            status = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            bar.update(task, advance=n, status=status)

        yield advance
