"""What the bench measures: the run, its optimize runs (siblings that name it as parent, and
``--with``), and for each the exported file of every variant: reused when export.json
vouches for it (same SHA-256, newer than the model), exported otherwise.

An export that fails (say int8 parity) does not stop the others: its variant's rows fail
with the exporter's message.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from .. import console
from ..compress.config import QUANTIZED
from ..errors import CifarEdgeError
from ..export import ExportOptions, Format, export_run, read_manifest
from ..export.formats import file_name, variant_name
from ..export.parity import file_facts
from ..fileio import read_json
from ..train.runfolder import RunFolder


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


def _method(root: Path) -> str | None:
    try:
        return (read_json(root / "config.json").get("optimize") or {}).get("method")
    except (OSError, ValueError):
        return None


def collect_runs(run_dir, with_runs=(), siblings: bool = True) -> list[RunRef]:
    """This run first, then optimize runs beside it whose config.json names it as ``parent``,
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
            if cfg.get("parent") and Path(cfg["parent"]).resolve() == me and (cfg.get("optimize") or {}).get("method"):
                found.append(d)
    for extra in with_runs:
        root = RunFolder(extra).root
        if not root.is_dir():
            raise CifarEdgeError(f"--with {extra}: no such run folder; pass an optimize run (`cifar-edge optimize`)")
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _state(path: Path, entry: dict | None, model: Path) -> str:
    """ok, missing, changed (bytes differ from export.json) or stale (older than the model)."""
    if not path.is_file() or entry is None:
        return "missing"
    if _sha256(path) != entry.get("sha256"):
        return "changed"
    if path.stat().st_mtime < model.stat().st_mtime:
        return "stale"
    return "ok"


_WHY = {"missing": "not exported yet", "changed": "its SHA-256 differs from export.json",
        "stale": "the run's model is newer than the file"}


def prepare_targets(ref: RunRef, variants, export: bool = True, export_cfg=None, command: str = "") -> list[Target]:
    """A :class:`Target` per (Format, ExportOptions) of ``variants`` for ``ref``'s run,
    exporting what is missing or stale."""
    run = RunFolder(ref.root)
    model = run.require_model()
    out = run.root / "export"
    manifest = read_manifest(out)
    targets, pending = [], []
    for fmt, opts in variants:
        name, path = variant_name(fmt, opts), out / file_name(fmt, opts)
        t = Target(name, fmt, opts, path)
        targets.append(t)
        if ref.method in QUANTIZED and not opts.int8:      # quantization-aware runs export int8 files only
            t.status, t.path = "skipped", None
            t.reason = f"{ref.method} run: it exports int8 files only (float ones belong to its parent run)"
            continue
        state = _state(path, manifest.get(path.name), model)
        if state == "ok":
            t.facts = {k: manifest[path.name][k] for k in ("size_bytes", "gzip_bytes", "sha256")}
            t.source = "reused"
        elif export:
            t.source = "exported" if state == "missing" else f"re-exported: {_WHY[state]}"
            pending.append(t)
        elif state == "missing":
            t.status, t.path = "skipped", None
            t.reason = f"not exported; run `cifar-edge export {run.root} --variant {name}` or drop --no-export"
        else:
            t.facts, t.source = file_facts(path), "as found"
            t.notes.append(f"measured as found (--no-export): {_WHY[state]}")
    _export(run.root, model, pending, export_cfg, command)
    return targets


def _export(root: Path, model: Path, pending: list[Target], export_cfg, command: str):
    """Export ``pending`` with export_run; when one fails, record why and go on with the rest."""
    from ..export import ExportConfig
    cfg = export_cfg or ExportConfig()
    while pending:
        try:
            entries = export_run(root, [(t.fmt, t.opts) for t in pending], cfg=cfg, command=command)
            done = {e["variant"]: e for e in entries}
            failed_at = len(pending)
        except CifarEdgeError as e:
            manifest = read_manifest(root / "export")
            done = {}
            for t in pending:             # export_run goes in order: the first not written is the one that failed
                if _state(t.path, manifest.get(t.path.name), model) != "ok":
                    break
                done[t.variant] = manifest[t.path.name]
            failed_at = len(done)
            if failed_at == len(pending):
                raise                     # every file was written: the failure was not one variant's
            bad = pending[failed_at]
            bad.status, bad.reason, bad.path = "failed", f"export failed: {e}", None
            console.warn(f"{bad.variant}: export failed ({e}); benching the others")
        for t in pending[:failed_at]:
            entry = done[t.variant]
            t.facts = {k: entry[k] for k in ("size_bytes", "gzip_bytes", "sha256")}
        pending = pending[failed_at + 1:]

