"""BenchConfig: what `cifar-edge bench` measures and how hard, checked before anything loads
so a typo fails in a second with the fix, not after minutes of exporting."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import CifarEdgeError
from ..export import ExportConfig, get_format, resolve_variants
from ..formats import check_runtime_names, default_threads
from .android import parse_device


@dataclass
class BenchConfig:
    runs: int = 200                      # timed single-image runs per row (after warm-up)
    warmup: int = 20                     # untimed runs before them
    limit: int | None = None             # top-1/top-5 on N test images (stratified); None: all
    threads: tuple = ()                  # CPU thread counts; () -> 1 and nproc
    batches: tuple = (32, 64)            # batch sizes for throughput
    variants: tuple = ()                 # variant names; () -> every variant of the format table
    formats: tuple = ()                  # only variants of these formats (names of the format table)
    runtimes: tuple = ()                 # backend names; () -> every backend that can load a variant
    with_runs: tuple = ()                # extra optimize runs (paths) to bench beside this one
    siblings: bool = True                # also bench optimize runs whose config names this run as parent
    export: bool = True                  # export missing/stale variants (False: measure what is there)
    reference: bool = True               # also run LiteRT's own benchmark CLI on each .tflite
    profile_ops: bool = False            # per-op latency profile on the runtimes that have a profiler
    device: str | None = None            # "android" or "android:SERIAL": also run on a phone via adb
    benchmark_binary: str | None = None  # local benchmark_model to push when the phone has none
    export_cfg: ExportConfig = field(default_factory=ExportConfig)

    def validate(self) -> "BenchConfig":
        if self.runs < 1 or self.warmup < 0:
            raise CifarEdgeError(f"--runs {self.runs} / --warmup {self.warmup} are invalid; use --runs 1 or more "
                                 "(200 or more for steady percentiles) and --warmup 0 or more")
        if self.limit is not None and self.limit < 1:
            raise CifarEdgeError(f"--limit {self.limit} is invalid; use 1 or more test images")
        if any(t < 1 for t in self.threads):
            raise CifarEdgeError(f"--threads {','.join(map(str, self.threads))} is invalid; use counts >= 1, e.g. 1,2")
        if any(b < 1 for b in self.batches):
            raise CifarEdgeError(f"--batch {','.join(map(str, self.batches))} is invalid; use sizes >= 1, e.g. 32,64")
        self.chosen_variants()                  # unknown names fail with a close match
        check_runtime_names(self.runtimes)
        if self.device is not None:
            parse_device(self.device)
        self.export_cfg.validate()
        return self

    def chosen_variants(self) -> list:
        """The variants to bench (formats.Variant), in the format table's order."""
        formats = {get_format(f).name for f in self.formats}
        chosen = resolve_variants(list(self.variants) or None, all_variants=not self.variants)
        return [v for v in chosen if not formats or v.fmt.name in formats]

    @property
    def thread_counts(self) -> tuple:
        """The thread counts to measure, ascending: the given ones, else 1 and every core."""
        return tuple(sorted(set(self.threads or (1, default_threads()))))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["threads"] = list(self.thread_counts)
        return d


def parse_ints(text: str | None, flag: str) -> tuple:
    """``"1,2"`` -> ``(1, 2)``; a clear error for anything else."""
    if not text:
        return ()
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise CifarEdgeError(f"--{flag} {text!r} is invalid; give comma-separated whole numbers, e.g. 1,2") from None
