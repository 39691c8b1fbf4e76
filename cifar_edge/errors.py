"""The one exception type users see.  The CLI prints its message on one line and exits 2."""


class CifarEdgeError(Exception):
    """A problem with the user's input; the message names the problem and the fix."""


def unknown_choice(kind: str, name: str, known) -> CifarEdgeError:
    """The error for a name that is not one of ``known``, with a close match when there is one."""
    import difflib
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return CifarEdgeError(f"unknown {kind} '{name}'; {hint}choose one of {', '.join(known)}")


def check_finite(options, flag=None) -> None:
    """Refuse NaN and infinite numbers in a dataclass of command-line options (``--lr inf``):
    they pass every range check written as a comparison, then train to NaN.  ``flag(field)``
    names the flag of a field whose flag is not ``--field``."""
    import dataclasses
    import math
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            name = flag(field.name) if flag else f"--{field.name.replace('_', '-')}"
            raise CifarEdgeError(f"{name} {value} is invalid; use a finite number")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in a command that writes a run folder; the message says what was kept and how
    to go on, which only that command knows."""
