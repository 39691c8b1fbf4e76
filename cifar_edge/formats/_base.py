"""What every format module builds on: export options, the Format and Backend records and their
registries, the Runner every runtime returns, and the export context.

A *format* is a file type with the options it accepts; a *variant* is one named combination
of options (``int8``, ``fp16``, ``int8-io-uint8`` ...) that ``--all`` and the bench export.
Unknown names and conflicting options fail here, before any work starts.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CifarEdgeError, unknown_choice

IO_TYPES = ("float", "int8", "uint8")


QUANTIZATIONS = ("none", "fp16", "dynamic", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")                  # activations quantized, ranges calibrated on training images
QUANTIZED = ("dynamic", "int8", "int16x8")         # int8 weights: parity judged against the int8 threshold


@dataclass(frozen=True)
class ExportOptions:
    """How to export: quantization, I/O type and converter settings."""
    quantization: str = "none"  # none; fp16 (float16 weights); dynamic (int8 weights, float activations);
                                # int8 (full-integer, calibrated activations); int16x8 (16-bit activations, 8-bit weights)
    io: str = "float"           # int8 models only: float, int8 or uint8 input/output
    opset: int = 17             # ONNX opset
    per_channel: bool = True    # int8 weights per output channel (else per tensor)
    from_tflite: bool = False   # ONNX int8: convert the int8 .tflite (QDQ) instead of quantizing in onnxruntime
    float_layers: tuple = ()    # int8: nodes kept in float (selective quantization, `export --max-drop`): the
                                # format's keep-in-float list (:class:`FloatLayers`)

    @property
    def quantized(self) -> bool:
        """Quantized activations or weights: parity is judged against the int8 threshold."""
        return self.quantization in QUANTIZED

    @property
    def calibrated(self) -> bool:
        """Activations quantized with ranges calibrated on training images."""
        return self.quantization in CALIBRATED

    @property
    def input_dtype(self) -> str:
        """The exported file's input tensor type."""
        return self.io if self.quantization == "int8" and self.io != "float" else "float32"

    def changed(self) -> dict:
        """{field: value} of the fields that differ from the defaults (the format table shows them)."""
        default = ExportOptions()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    def set_options(self) -> set:
        """The option names that differ from the defaults, a quantization by its mode (``int8``): the
        names formats accept and flags are made of."""
        names = set(self.changed())
        return names - {"quantization"} | ({self.quantization} if "quantization" in names else set())

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "float_layers": list(self.float_layers)}   # as JSON holds it

    @classmethod
    def from_dict(cls, d: dict) -> "ExportOptions":
        """Options as export.json holds them, including those written before the quantization mode
        was one field (four booleans: ``int8``, ``fp16``, ``dynamic``, ``int16x8``)."""
        d = dict(d)
        modes = [m for m in QUANTIZATIONS if d.pop(m, False) is True]
        if modes and "quantization" not in d:
            d["quantization"] = modes[0]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "float_layers" else v) for k, v in d.items() if k in known})


def quantization_from_flags(**flags: bool) -> str:
    """The one quantization mode the CLI's ``--int8``/``--fp16``/``--dynamic``/``--int16x8`` flags
    name (``none`` without one); two of them conflict."""
    modes = [m for m, on in flags.items() if on and m in QUANTIZATIONS]
    if len(modes) > 1:
        raise CifarEdgeError(f"--{' and --'.join(modes)} conflict: choose one quantization mode")
    return modes[0] if modes else "none"


@dataclass
class Runner:
    """A loaded model: ``run(x)`` maps normalized float32 (N, H, W, 3) to float32 outputs."""
    runtime: str
    path: str
    input_size: int
    input_dtype: str
    threads: int | None
    notes: list = field(default_factory=list)   # e.g. "XNNPACK refused the model: builtin kernels"
    _call: object = None
    placement: dict | None = None              # which engine ran how many of the graph's nodes (op placement)
    footprint: dict | None = None              # a microcontroller's needs: arena and flash bytes, budgets met
    timer: Callable | None = None              # timer(x, runs, warmup) -> ms per run, timed inside the runtime
                                               # (a browser page): what latency and throughput then use
    close: Callable | None = None              # releases what the runner holds open (a browser)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._call(np.ascontiguousarray(x, dtype=np.float32))

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Outputs for a whole array, in batches."""
        return np.concatenate([self.run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def default_threads() -> int:
    return os.cpu_count() or 1


class Unavailable(Exception):
    """This backend cannot run on this machine (no GPU, no provider, a package not installed):
    its bench row is kept as skipped, with this reason."""


def gpu_missing() -> str | None:
    """Why there is no GPU to run on, or None when a GPU device node exists."""
    nodes = [p for pattern in ("/dev/nvidia[0-9]*", "/dev/dri/renderD*", "/dev/kgsl-3d0", "/dev/mali*")
             for p in glob.glob(pattern)]
    return None if nodes else "no GPU"


def is_software_adapter(description: str) -> bool:
    """An adapter that is the CPU emulating a GPU: its latency is not a GPU's."""
    text = description.lower()
    return any(k in text for k in ("software", "llvmpipe", "lavapipe", "swiftshader", "cpu"))


def on_software_gpu(placement: dict | None) -> bool:
    """A runner's (or row's) placement says it ran on a software GPU adapter."""
    return bool(((placement or {}).get("adapter") or {}).get("software"))


SOFTWARE_GPU_NOTE = ("software GPU ({}): latency is this CPU emulating a GPU, not a device figure; "
                     "agreement and placement are what this row shows")


@dataclass(frozen=True)
class Backend:
    """A runtime on one device with one set of options: what a bench row runs a file on."""
    name: str
    formats: tuple       # the formats whose files it loads
    device: str          # cpu, gpu, mcu (a microcontroller runtime on this host), browser or android
    threaded: bool       # one row per --threads count (else one row at the runtime's own setting)
    description: str
    opener: Callable | None = None   # opener(path, threads) -> Runner; None: run by the android module
    max_images: int | None = None    # a slow runtime (reference kernels) checks agreement on this many images
    profiler: Callable | None = None   # profiler(path, threads, x, runs) -> per-node times (``bench --profile-ops``)
    batched: bool = True             # runs batches natively (else no batch-throughput figures: one image at a time)
    reference: "ReferenceTimer | None" = None   # another tool's timing of the same file: a second opinion on the row
    device_args: tuple = ()          # what a device's own harness runs it with (benchmark_model's delegate flags)
    packages: tuple = ()             # the Python packages whose versions its figures depend on (export/bench.json)
    page_assets: Callable | None = None   # page_assets() -> the folder of scripts `cifar-edge serve`'s page runs its
                                          # files with, in the user's browser (raises Unavailable when not installed)


@dataclass(frozen=True)
class ReferenceTimer:
    """A runtime's own benchmark tool (LiteRT's CLI, say) timing the file a row times, with the
    same threads: its median beside ours shows whether our harness adds or hides anything."""
    run: Callable          # run(path, threads, runs, warmup) -> {"tool", "median_ms", "avg_ms", "p95_ms", ...} or {"error"}
    same_engine: Callable  # same_engine(row_engine) -> whether the tool runs the kernels the row ran (else a
                           # disagreement is expected, and not measured again)


@dataclass(frozen=True)
class FloatLayers:
    """How a format keeps chosen layers of a calibrated int8 model in float (selective int8):
    what ``--float-layers`` resolves against and what the repair search (`export --max-drop`) tries."""
    nodes: Callable          # nodes(ctx, opts) -> the node names its keep-in-float list takes, in graph order
    rank: Callable           # rank(ctx, opts, images) -> layers, worst first: {"rank", "layer", "node", "op",
                             # "added_nsr", "accumulated_nsr"} (+ "with": nodes kept together with it)
    open: Callable           # open(data: bytes) -> a 1-thread Runner on a candidate file's bytes (refusing what would crash)
    fallbacks: Callable = lambda opts: []   # fallbacks(opts) -> [(options, label)]: whole-model files tried after the selective ones
    qat_refusal: str = ""    # why a quantization-aware run's file cannot keep layers in float ("": it can)
    diagnose: Callable | None = None   # diagnose(ctx, opts, held_out, calibration, images) -> (per-layer ranking on
                                       # held_out and calibration, the int8 file's outputs on images): `cifar-edge diagnose`


@dataclass(frozen=True)
class Format:
    """One file type: everything export, bench, serve and the CLI need to know about it.
    Each lives in its own module of this package and registers itself (:func:`register`)."""
    name: str
    suffix: str                 # the file's suffix (a folder's, when ``folder``)
    options: frozenset          # ExportOptions fields this format accepts
    description: str
    export: Callable            # export(ctx: ExportContext, path, opts) writes the file (or folder) at path
    open: Callable              # open(path, threads=None) -> Runner on the format's own runtime
    runtime: str                # that runtime's backend name: parity and a file's top-1 are measured on it
    variants: dict              # variant name -> ExportOptions, in table order
    order: int                  # where its rows sit in tables
    check: Callable | None = None   # check(opts): raise on option combinations only this format refuses
    probe: Callable | None = None   # probe(path, name): refuse, in a child process, a file that would crash this one
    folder: bool = False        # the export is a folder of files (an IR as .xml + .bin, say)
    other_suffixes: tuple = ()  # more suffixes its opener reads (Keras: a run's model.keras)
    made_from: str = ""         # the format whose file its exporter converts ("": from the model itself)
    precision_in_name: bool = True   # its variants' names say float32 (a format of the model as trained: no)
    float_layers: FloatLayers | None = None   # selective int8 (``--float-layers``, the repair search); None: not offered
    packages: tuple = ()        # the Python packages whose versions its files depend on (export.json's versions)

    @property
    def runtimes(self) -> tuple:
        """Names of the backends that load this format's files."""
        return tuple(b.name for b in BACKENDS.values() if self.name in b.formats)

    def files(self, path) -> list[Path]:
        """The files an export consists of (sizes and hashes cover all of them)."""
        path = Path(path)
        return sorted(p for p in path.rglob("*") if p.is_file()) if self.folder else [path]


# The registries, filled by the format modules as cifar_edge.formats imports them.
FORMATS: dict[str, Format] = {}
BACKENDS: dict[str, Backend] = {}


def register(fmt: Format | None = None, backends=()):
    """Add a format and/or backends (a module may add rows for other formats' files too)."""
    if fmt is not None:
        FORMATS[fmt.name] = fmt
        ordered = sorted(FORMATS.values(), key=lambda f: f.order)
        FORMATS.clear()
        FORMATS.update((f.name, f) for f in ordered)
    for b in backends:
        BACKENDS[b.name] = b


@dataclass(frozen=True)
class Variant:
    """One file export can write: a format, its options and the name its file and its rows carry.
    Made once (from the format table or from a command's flags) and carried through export, repair
    and bench, so no later step has to work a name out of options again."""
    fmt: Format
    opts: ExportOptions
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", variant_name(self.fmt, self.opts))

    @property
    def file_name(self) -> str:
        return self.name + self.fmt.suffix

    def with_options(self, opts: ExportOptions) -> "Variant":
        """The same format with other options (a repaired or resolved file), named for them."""
        return self if opts == self.opts else Variant(self.fmt, opts)


def variants() -> dict[str, Variant]:
    """Every named variant of every format: what `export --all` and the bench produce, in table order."""
    return {name: Variant(fmt, opts, name) for fmt in FORMATS.values() for name, opts in fmt.variants.items()}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise unknown_choice("format", name, FORMATS)
    return FORMATS[name]


def get_variant(name: str) -> Variant:
    table = variants()
    if name not in table:
        raise unknown_choice("variant", name, table)
    return table[name]


def validate(fmt: Format, opts: ExportOptions) -> ExportOptions:
    """Reject options the format does not take and combinations that contradict each other."""
    unsupported = sorted(opts.set_options() - fmt.options)
    if unsupported:
        flags = ", ".join("--" + o.replace("_", "-") for o in unsupported)
        raise CifarEdgeError(f"{fmt.name} export does not take {flags}; it accepts "
                             f"{', '.join(sorted(fmt.options)) or 'no options'}")
    if opts.quantization not in QUANTIZATIONS:
        raise unknown_choice("quantization", opts.quantization, QUANTIZATIONS)
    if opts.io not in IO_TYPES:
        raise unknown_choice("I/O type", opts.io, IO_TYPES)
    if opts.io != "float" and opts.quantization != "int8":
        raise CifarEdgeError(f"--io {opts.io} needs a full-integer model; add --int8")
    if opts.float_layers and not opts.calibrated:
        raise CifarEdgeError("--float-layers keeps layers of a calibrated model in float; add --int8 (or --int16x8)")
    if opts.float_layers and opts.io != "float":
        raise CifarEdgeError("--float-layers takes float input/output; drop --io")
    if fmt.check is not None:
        fmt.check(opts)
    return opts


QAT_INT8_ONLY = "a quantization-aware run exports int8 files only (float ones belong to its parent run)"


def qat_allows(fmt: Format, opts: ExportOptions) -> bool:
    """A quantization-aware model is trained to ship as integers: only its int8 variants exist
    (int8 with float layers too, when a repair keeps some)."""
    return opts.quantization == "int8"


def variant_name(fmt: Format, opts: ExportOptions) -> str:
    """The stable name (and file stem) of a format + options, by one rule: ``tflite-int8-io-uint8``
    (the format tables' names follow it; tests/test_formats.py holds them to it)."""
    parts = [fmt.name]
    if opts.quantization != "none":
        parts.append(opts.quantization)
    elif fmt.precision_in_name:
        parts.append("float32")
    if opts.float_layers:
        parts.append("selective")
    if opts.io != "float":
        parts.append(f"io-{opts.io}")
    if not opts.per_channel:
        parts.append("per-tensor")
    if opts.from_tflite:
        parts.append("from-tflite")
    if opts.opset != ExportOptions().opset and "opset" in fmt.options:
        parts.append(f"opset{opts.opset}")
    return "-".join(parts)


def file_name(fmt: Format, opts: ExportOptions) -> str:
    return variant_name(fmt, opts) + fmt.suffix


def format_of(path) -> Format:
    """The format a file (or an export folder) belongs to, by its suffix."""
    path = Path(path)
    for fmt in FORMATS.values():
        if path.name.endswith((fmt.suffix, *fmt.other_suffixes)) and path.is_dir() == fmt.folder:
            return fmt
    suffixes = ", ".join(f.suffix for f in FORMATS.values())
    raise CifarEdgeError(f"{path}: not a model file this tool knows (its suffix is '{path.suffix}'); "
                         f"pass a {suffixes} written by `cifar-edge export`")


def check_runtime_names(names):
    for name in names:
        if name not in BACKENDS:
            raise unknown_choice("runtime", name, BACKENDS)


def op_profile(engine: str, nodes: list, runs: int, top: int = 12) -> dict:
    """One runtime's per-op profile in one shape: ``nodes`` holds ``{"node", "op", "ms", "kernel"}``
    with ``ms`` summed over ``runs`` single-image inferences; kept as the mean per inference,
    totalled by op type, and the slowest nodes by name."""
    per_node: dict = {}
    for n in nodes:
        entry = per_node.setdefault(n["node"], {"node": n["node"], "op": n["op"], "kernel": n.get("kernel"), "ms": 0.0})
        entry["ms"] += n["ms"] / runs
    by_op: dict = {}
    for n in per_node.values():
        by_op[n["op"]] = by_op.get(n["op"], 0.0) + n["ms"]
    slowest = sorted(per_node.values(), key=lambda n: -n["ms"])
    return {"engine": engine, "runs": runs, "nodes": len(per_node), "total_ms": sum(by_op.values()),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])), "slowest": slowest[:top]}


HOST_DEVICES = ("cpu", "gpu", "mcu", "browser")    # what runs on this machine (android: on a phone)


def backends_for(fmt: Format, names=(), devices=HOST_DEVICES) -> list[Backend]:
    """The backends that load ``fmt``'s files on ``devices``, limited to ``names`` when given:
    the format's own runtime first, then by device in the order of ``devices``."""
    chosen = [b for b in BACKENDS.values() if fmt.name in b.formats and (not names or b.name in names)
              and b.device in devices]
    return sorted(chosen, key=lambda b: (b.name != fmt.runtime, devices.index(b.device)))


def open_backend(backend: Backend, path, threads: int | None) -> Runner:
    """Load ``path`` on ``backend``; raises Unavailable (skip) or CifarEdgeError (fail)."""
    if backend.opener is None:
        raise CifarEdgeError(f"backend {backend.name} runs on a phone: pass --device android[:SERIAL]")
    return backend.opener(path, threads)


def open_model(path, runtime: str | None = None, threads: int | None = None) -> Runner:
    """Open an exported file with ``runtime`` (a backend name; default: its format's own runtime)."""
    path = Path(path)
    if not path.exists():
        raise CifarEdgeError(f"model file {path} does not exist; export it first with `cifar-edge export`")
    fmt = format_of(path)
    if runtime is None or runtime == fmt.runtime:
        return fmt.open(path, threads=threads)
    check_runtime_names([runtime])
    backend = BACKENDS[runtime]
    if fmt.name not in backend.formats:
        raise CifarEdgeError(f"runtime {runtime} does not load {fmt.name} files; use one of {', '.join(fmt.runtimes)}")
    try:
        return open_backend(backend, path, threads)
    except Unavailable as e:
        raise CifarEdgeError(f"runtime {runtime} cannot run here: {e}") from None


@dataclass
class ExportContext:
    """What every exporter gets: the model, the run it came from, and calibration images;
    plus what one export makes that another reuses, in each format's own cache (:meth:`cache`)."""
    model: object                     # the Keras model (plain, stripped, or QAT-wrapped)
    class_names: list
    norm: object                      # cifar_edge.data.Normalization
    input_size: int
    calibration: np.ndarray           # normalized float32 training images, (N, H, W, 3)
    qat: bool = False                 # the model was trained quantization-aware
    output_is_logits: bool = True     # False: the model ends in a softmax (an imported one may)
    name: str = "cifar-edge model"
    description: str = ""
    repair: dict | None = None        # the --max-drop search behind this export, for its manifest entry
    caches: dict = field(default_factory=dict)        # format name -> what its exporter keeps for the next file
    identity_split: tuple = ()        # convs whose identity tap quantized files carry as a residual Add
    measured: dict = field(default_factory=dict)       # ExportOptions -> the file bytes the repair search measured
    quantized_view: object = None     # the context quantized files convert from, once made

    def quantizable(self) -> "ExportContext":
        """The context quantized files convert from: the model with dominant identity taps
        split off as residual Adds (:mod:`._identity_split`), so int8 weights keep the learned
        part's range; itself for QAT models (their ranges are learned) and when no conv qualifies.
        Its own caches (SavedModel, calibration, converted bytes) belong to the split model."""
        if self.quantized_view is None:
            from ._identity_split import split_identity
            model, names = (self.model, []) if self.qat else split_identity(self.model)
            self.quantized_view = self if not names else dataclasses.replace(
                self, model=model, identity_split=tuple(names), caches={}, measured={}, quantized_view=None)
            self.quantized_view.quantized_view = self.quantized_view
        return self.quantized_view

    def cache(self, owner: str) -> dict:
        """The dict ``owner`` (a format's name) keeps what it made for this model in (a SavedModel,
        converted bytes), so the next file of the same export reuses it; empty for a new model."""
        return self.caches.setdefault(owner, {})

    def for_options(self, opts) -> "ExportContext":
        """The context a file with ``opts`` converts from: float files from the model as trained."""
        return self.quantizable() if opts.quantized else self

    def model_facts(self, opts, folded: bool = False) -> dict:
        """What an app needs to run the exported file without cifar-edge (input size and type,
        normalization, labels); embedded in every exported file.  A file with the
        normalization ``folded`` into its graph takes raw pixels: mean 0, std 1 for the app."""
        norm = {"mean": [float(v) for v in self.norm.mean], "std": [float(v) for v in self.norm.std]}
        if folded:
            norm = {"mean": [0.0] * 3, "std": [1.0] * 3, FOLDED_NORMALIZATION: norm}
        return {"input_size": int(self.input_size), **norm, "input_dtype": opts.input_dtype,
                "output_is_logits": bool(self.output_is_logits), "labels": list(self.class_names),
                "quantization": opts.quantization, "qat": bool(self.qat),
                **({"float_layers": list(opts.float_layers)} if opts.float_layers else {})}


def imported_converter(model, name: str):
    """An imported model's own converter ``name`` (saved_model, onnx, tflite), or None: for a
    tf_keras model, and for converters its kind does not have."""
    from ..source_models import SourceModel
    return getattr(model, name, None) if isinstance(model, SourceModel) else None


FOLDED_NORMALIZATION = "normalization_in_graph"   # metadata key: the graph normalizes; the file takes raw pixels
