"""Bench: every exported variant of a run on every runtime that can load it, measured the
same way (accuracy, latency percentiles, throughput, memory, ops/s against this machine's
peak), written to RUN/bench; plus the CI gate and the one-page HTML report."""
from ..formats import BACKENDS
from .config import BenchConfig, parse_ints
from .gate import check_thresholds, gate
from .outputs import rich_table
from .report import write_report
from .run import bench_run

__all__ = ["BACKENDS", "BenchConfig", "parse_ints", "check_thresholds", "gate", "rich_table", "write_report",
           "bench_run"]
