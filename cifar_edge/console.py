"""The library's one voice: status lines and progress bars go through here (rich, to stderr),
so library code never calls print and the CLI can keep stdout for results.

It also keeps the other voices down.  TensorFlow, absl, oneDNN, XNNPACK, LiteRT and the TFLite
converter write their own log lines from C++ straight to file descriptor 2, some while
TensorFlow is still being imported (before any Python logging or TF_CPP_MIN_LOG_LEVEL applies),
so Python cannot filter them.  Unless verbose (``--verbose`` or ``CIFAR_EDGE_VERBOSE=1``), the
environment is set before TensorFlow loads, and the CLI points descriptor 2 at /dev/null while
Python's own ``sys.stderr`` (our progress, warnings and errors) keeps the real stderr."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


VERBOSE_ENV = "CIFAR_EDGE_VERBOSE"


def verbose() -> bool:
    """Whether TensorFlow's and the runtimes' own log lines are wanted (``--verbose`` sets the env var)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def tensorflow_environment():
    """Before TensorFlow loads (``_tf`` calls this): its C++ logging off, errors included (the
    cuInit failure of every GPU-less machine is an error line), unless verbose."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 to /dev/null for the block, unless verbose: what C++ prints there while
    TensorFlow's shared libraries load (absl's "All log messages before absl::InitializeLog()",
    oneDNN, "Could not find cuda drivers") no environment variable turns off."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def keep_native_stderr_away():
    """For the CLI's process, once, before anything native loads: descriptor 2 goes to /dev/null
    for good (LiteRT and XNNPACK announce themselves on every interpreter, the converter prints
    its settings), and ``sys.stderr`` moves to a copy of the real stderr, so our progress,
    warnings and errors still show.  Skipped when verbose, and when ``sys.stderr`` is not the
    process's own (a test runner capturing it)."""
    if verbose() or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):     # no usable descriptor 2: nothing to keep away
        return
    stream = os.fdopen(real, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                       errors=sys.stderr.errors or "backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = stream


class _DropLines(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record):
        return self.text not in record.getMessage()


@contextlib.contextmanager
def without_notes(logger: str | None, log_text: str, warning: str):
    """For the block, hide one known log line (records of ``logger``, the root logger when None,
    that contain ``log_text``) and the UserWarnings whose message matches ``warning``: notes
    libraries print that say nothing about the user's model."""
    target, drop = logging.getLogger(logger), _DropLines(log_text)
    target.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=warning, category=UserWarning)
            yield
    finally:
        target.removeFilter(drop)


@contextlib.contextmanager
def chatter_hidden():
    """For the block, unless verbose: what a converter prints on Python's stdout and stderr and the
    warnings it raises (litert-torch's progress lines, torch.onnx's steps, JAX's note on os.fork)
    go nowhere; our own errors still reach the user as exceptions."""
    if verbose():
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


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
