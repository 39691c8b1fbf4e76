"""What the bench measures: the run, its optimize runs (siblings that name it as parent, and
``--with``), and for each the exported file of every variant: reused when export.json
vouches for it (same SHA-256, newer than the model), exported otherwise.

An export that fails (say int8 parity) does not stop the others: its variant's rows fail
with the exporter's message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CifarEdgeError
from ..export import ExportOptions, Format, export_run, read_failures, read_manifest
from ..formats import QAT_INT8_ONLY, Variant, qat_allows
from ..export.parity import file_facts
from ..fileio import read_json
from ..runs import QUANTIZED, RunFolder, optimize_method, source_kind
from ..source_models import refusal


@dataclass
class RunRef:
    """One run to bench: its folder, how it was made (None: plain training) and the short
    name its rows carry (``trained`` for the run asked for, else the method or folder name)."""
    root: Path
    method: str | None = None
    label: str = "trained"
    main: bool = True

    def name(self, variant: str) -> str:
        """How a variant of this run is named in tables, plots and the gate."""
        return variant if self.main else f"{self.label}:{variant}"


@dataclass
class Target:
    """One variant of one run: its file when it can be measured, else why not."""
    variant: str
    fmt: Format
    opts: ExportOptions
    path: Path | None = None
    facts: dict = field(default_factory=dict)     # size_bytes, gzip_bytes, sha256
    status: str = "ok"                            # ok, skipped or failed
    reason: str = ""
    source: str = ""                              # reused, exported or re-exported (why)
    notes: list = field(default_factory=list)
    entry: dict | None = None                     # its export.json entry, when export vouches for the file


def _method(root: Path) -> str | None:
    try:
        return optimize_method(read_json(root / "config.json"))
    except (OSError, CifarEdgeError):
        return None


def collect_runs(run_dir, with_runs=(), siblings: bool = True) -> list[RunRef]:
    """This run first, then finished optimize runs beside it whose config.json names it as ``parent``,
    then ``--with`` runs (each once)."""
    main = RunFolder(run_dir)
    main.require_model()
    method = _method(main.root)
    refs = [RunRef(main.root, method, method or "trained")]
    found = []
    if siblings:
        me = main.root.resolve()
        for d in sorted(p for p in main.root.resolve().parent.iterdir() if p.is_dir() and p.resolve() != me):
            try:
                cfg = read_json(d / "config.json")
            except (OSError, ValueError):
                continue
            if (cfg.get("parent") and Path(cfg["parent"]).resolve() == me and (cfg.get("optimize") or {}).get("method")
                    and RunFolder(d).metrics.is_file()):      # an unfinished one has no optimized model yet
                found.append(d)
    for extra in with_runs:
        root = RunFolder(extra).root
        if not root.is_dir():
            raise CifarEdgeError(f"--with {extra}: no such run folder; pass an optimize run (`cifar-edge optimize`)")
        try:
            RunFolder(root).require_model()
            RunFolder(root).read_config()
        except CifarEdgeError as e:
            raise CifarEdgeError(f"--with {extra} is not a run folder (one that `cifar-edge train` or `optimize` "
                                 f"wrote: a model and its config.json): {e}") from None
        found.append(root)
    seen = {main.root.resolve()}
    for d in found:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            method = _method(d)
            label = method or d.name
            if label in {r.label for r in refs}:
                label = f"{label}:{d.name}"
            refs.append(RunRef(d, method, label, main=False))
    return refs


def _facts(fmt, path: Path) -> dict:
    return file_facts(fmt.files(path), root=path)


def _state(fmt, path: Path, entry: dict | None, model: Path) -> str:
    """ok, missing, changed (bytes differ from export.json) or stale (older than the model)."""
    if not path.exists() or entry is None:
        return "missing"
    if _facts(fmt, path)["sha256"] != entry.get("sha256"):
        return "changed"
    if path.stat().st_mtime < model.stat().st_mtime:
        return "stale"
    return "ok"


_WHY = {"missing": "not exported yet", "changed": "its SHA-256 differs from export.json",
        "stale": "the run's model is newer than the file"}


def prepare_targets(ref: RunRef, variants, export: bool = True, export_cfg=None, command: str = "",
                    loaded=None) -> list[Target]:
    """A :class:`Target` per variant (formats.Variant) of ``variants`` for ``ref``'s run,
    exporting what is missing or stale (from ``loaded``, the run bench already holds)."""
    run = RunFolder(ref.root)
    model = run.require_model()
    config = run.read_config()
    out = run.export_dir
    manifest, failed = read_manifest(out), read_failures(out)
    targets, pending = [], []
    for variant in variants:
        fmt, opts, name, path = variant.fmt, variant.opts, variant.name, out / variant.file_name
        t = Target(name, fmt, opts, path)
        targets.append(t)
        if ref.method in QUANTIZED and not qat_allows(fmt, opts):
            t.status, t.path, t.reason = "skipped", None, f"{ref.method} run: {QAT_INT8_ONLY}"
            continue
        why = refusal(config, fmt.name, opts)
        if why:
            t.status, t.path, t.reason = "skipped", None, f"imported {source_kind(config)} model: {why}"
            continue
        state = _state(fmt, path, manifest.get(path.name), model)
        if state == "ok":
            t.facts = {k: manifest[path.name][k] for k in ("size_bytes", "gzip_bytes", "sha256")}
            t.source, t.entry = "reused", manifest[path.name]
        elif export:
            t.source = "exported" if state == "missing" else f"re-exported: {_WHY[state]}"
            pending.append(t)
        elif state == "missing":
            t.status, t.path = "skipped", None
            t.reason = (f"not exported: its last export failed ({failed[name]['reason']})" if name in failed else
                        f"not exported; run `cifar-edge export {run.root} --variant {name}` or drop --no-export")
        else:
            t.facts, t.source = _facts(fmt, path), "as found"
            t.notes.append(f"measured as found (--no-export): {_WHY[state]}")
    _export(loaded or run.root, pending, export_cfg, command)
    return targets


def _export(root, pending: list[Target], export_cfg, command: str):
    """Export ``pending`` in one export_run; a variant that fails gets its reason, the rest go on.
    A problem of the whole run (data missing, no calibration images) fails every pending row."""
    from ..export import ExportConfig
    if not pending:
        return
    failures = {}
    try:
        entries = export_run(root, [Variant(t.fmt, t.opts, t.variant) for t in pending], cfg=export_cfg or ExportConfig(),
                             command=command, failures=failures)
    except CifarEdgeError as e:
        entries, failures = [], {t.variant: str(e) for t in pending}
    done = {e["variant"]: e for e in entries}
    for t in pending:
        if t.variant in done:
            t.facts = {k: done[t.variant][k] for k in ("size_bytes", "gzip_bytes", "sha256")}
            t.entry = done[t.variant]
        else:
            t.status, t.path = "failed", None
            t.reason = f"export failed: {failures.get(t.variant, 'no file written')}"
