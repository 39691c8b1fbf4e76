"""Benchmarking on a phone: push the .tflite over ``adb`` and run LiteRT's official
``benchmark_model`` binary with the XNNPACK, GPU (fp16 allowed or not) and NNAPI delegates,
then read its log into the same row fields the host measures.

The pieces are separate so they can be checked without a phone: :func:`parse_device`,
:func:`benchmark_command` (the exact argv) and :func:`parse_benchmark_model` (its output).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import CifarEdgeError
from ..formats import BACKENDS

REMOTE_DIR = "/data/local/tmp/cifar_edge"
REMOTE_BINARY = "/data/local/tmp/benchmark_model"
DEFAULT_THREADS = (1, 4)          # phones: one core, and the big cluster


def parse_device(text: str) -> str | None:
    """``android`` -> None (the one attached phone), ``android:SERIAL`` -> SERIAL."""
    kind, sep, serial = text.partition(":")
    if kind != "android":
        import difflib
        close = difflib.get_close_matches(kind, ["android"], n=1)
        hint = f"did you mean 'android{':' + serial if serial else ''}'? " if close else ""
        raise CifarEdgeError(f"unknown --device '{text}'; {hint}use android or android:SERIAL "
                             "(serials from `adb devices`)")
    if sep and not serial:
        raise CifarEdgeError("--device android: has an empty serial; use android or android:SERIAL")
    return serial or None


def find_adb() -> str:
    found = shutil.which("adb")
    sdk = os.environ.get("ANDROID_HOME") or os.environ.get("ANDROID_SDK_ROOT")
    if not found and sdk and Path(sdk, "platform-tools", "adb").is_file():
        found = str(Path(sdk, "platform-tools", "adb"))
    if not found:
        raise CifarEdgeError("--device android needs adb, which is not on PATH; install Android platform-tools "
                             "(`apt-get install adb`, or set ANDROID_HOME) or drop --device")
    return found


def parse_devices(text: str) -> dict:
    """``adb devices`` output -> {serial: state} (device, unauthorized, offline ...)."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
            out[parts[0]] = parts[1]
    return out


def pick_serial(devices: dict, wanted: str | None) -> str:
    """The serial to use, or a CifarEdgeError that says how to get a usable phone."""
    if wanted is not None:
        if wanted not in devices:
            listed = ", ".join(devices) or "none"
            raise CifarEdgeError(f"Android device {wanted} is not attached (attached: {listed}); check the cable "
                                 "and `adb devices`")
        chosen = wanted
    else:
        if not devices:
            raise CifarEdgeError("no Android device is attached (`adb devices` lists none); connect a phone with "
                                 "USB debugging on and accept its prompt, or drop --device")
        if len(devices) > 1:
            raise CifarEdgeError(f"{len(devices)} Android devices are attached ({', '.join(devices)}); pick one "
                                 "with --device android:SERIAL")
        chosen = next(iter(devices))
    state = devices[chosen]
    if state != "device":
        fix = ("accept the USB debugging prompt on the phone" if state == "unauthorized"
               else "reconnect it (`adb reconnect`)")
        raise CifarEdgeError(f"Android device {chosen} is {state}; {fix}")
    return chosen


def benchmark_command(adb: str, serial: str, graph: str, backend: str, threads: int, runs: int, warmup: int,
                      binary: str = REMOTE_BINARY) -> list[str]:
    """The argv that runs benchmark_model on the phone for one row."""
    phone = {b.name: b for b in BACKENDS.values() if b.device == "android"}
    if backend not in phone:
        raise CifarEdgeError(f"{backend} is not an Android backend; use one of {', '.join(phone)}")
    return [adb, "-s", serial, "shell", binary, f"--graph={graph}", f"--num_threads={threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup}", *phone[backend].device_args]


def push_command(adb: str, serial: str, local, remote: str) -> list[str]:
    return [adb, "-s", serial, "push", str(local), remote]


# --------------------------------------------------------------------------- the log
_NUM = r"(-?[\d.]+(?:e[+-]?\d+)?)"
_TIMINGS = re.compile(rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, "
                      rf"Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}")
_STAT = re.compile(r"count=\d+(?: \w+=[-\d.e+]+)+")
_MEMORY = re.compile(rf"Memory footprint delta from the start of the tool \(MB\): init={_NUM} overall={_NUM}")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_THREADS = re.compile(r"Num threads: \[(\d+)\]")
_DELEGATION = re.compile(r"(Replacing \d+ out of \d+ node\(s\) with delegate \(\w+\) node.*|"
                         r"Explicitly applied \w+ delegate, and the model graph will be .*|"
                         r"Though \w+ delegate is explicitly applied, the model graph will not be executed.*)")


def parse_benchmark_model(text: str) -> dict:
    """benchmark_model's log -> timings in microseconds, memory in MB, delegation notes and
    errors.  Raises CifarEdgeError with the tool's own error when it produced no timings."""
    lines = [re.sub(r"^(INFO|WARNING|ERROR): ", "", ln.strip()) for ln in text.splitlines()]
    errors = [ln.strip()[len("ERROR: "):] for ln in text.splitlines() if ln.strip().startswith("ERROR: ")]
    timings = _TIMINGS.search(text)
    if not timings:
        specific = [e.rstrip(".") for e in errors if e.strip() != "Benchmarking failed."]
        why = "; ".join(dict.fromkeys(specific[:1] + specific[-1:])) or (lines[-1] if lines else "no output")
        raise CifarEdgeError(f"benchmark_model failed: {why[:200]}")
    init, first, warm, avg = map(float, timings.groups())
    stats = [dict(kv.split("=") for kv in m.group(0).split()) for m in _STAT.finditer(text)]
    out = {"init_us": init, "first_inference_us": first, "warmup_avg_us": warm, "inference_avg_us": avg,
           "inference": {k: float(v) for k, v in stats[-1].items()} if stats else {},
           "warmup": {k: float(v) for k, v in stats[0].items()} if len(stats) > 1 else {},
           "notes": [m.group(1).rstrip(".") for ln in lines for m in [_DELEGATION.search(ln)] if m],
           "errors": errors}
    if mem := _MEMORY.search(text):
        out["memory_init_mb"], out["memory_overall_mb"] = float(mem.group(1)), float(mem.group(2))
    if peak := _PEAK.search(text):
        out["peak_memory_mb"] = float(peak.group(1))
    if threads := _THREADS.search(text):
        out["threads"] = int(threads.group(1))
    return out


def to_measurement(parsed: dict) -> dict:
    """Row fields from a parsed log (what the host's measure step fills in)."""
    inf = parsed["inference"]
    p50 = inf.get("median", parsed["inference_avg_us"]) / 1e3
    latency = {"p50_ms": p50, "p90_ms": None, "p99_ms": None, "p95_ms": inf["p95"] / 1e3 if "p95" in inf else None,
               "mean_ms": parsed["inference_avg_us"] / 1e3, "min_ms": inf.get("min", 0) / 1e3 or None,
               "max_ms": inf.get("max", 0) / 1e3 or None, "runs": int(inf.get("count", 0)) or None,
               "iqr_rel": None, "mad_rel": None, "std_rel": (inf["std"] / 1e3 / p50) if "std" in inf and p50 else None,
               "noise": "std/median: benchmark_model reports no quartiles"}
    notes = list(parsed["notes"])
    if "median" not in inf:
        notes.append("this benchmark_model prints no median: p50 is its average")
    return {"latency": latency, "load_ms": parsed["init_us"] / 1e3,
            "first_inference_ms": parsed["first_inference_us"] / 1e3,
            "peak_rss_delta_mb": parsed.get("peak_memory_mb", parsed.get("memory_overall_mb")), "notes": notes}


# --------------------------------------------------------------------------- a connected phone
@dataclass
class Phone:
    adb: str
    serial: str
    binary: str = REMOTE_BINARY

    def run(self, argv, timeout: float = 600, check: bool = True) -> str:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CifarEdgeError(f"`{' '.join(argv[:6])} ...` did not finish in {timeout:.0f} s") from None
        if check and proc.returncode != 0:
            tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise CifarEdgeError(f"`{' '.join(argv[:5])} ...` failed: {tail[0][:200]}")
        return proc.stdout + proc.stderr

    def push(self, local) -> str:
        remote = f"{REMOTE_DIR}/{Path(local).name}"
        self.run([self.adb, "-s", self.serial, "shell", "mkdir", "-p", REMOTE_DIR])
        self.run(push_command(self.adb, self.serial, local, remote))
        return remote

    def benchmark(self, remote_graph: str, backend: str, threads: int, runs: int, warmup: int) -> dict:
        log = self.run(benchmark_command(self.adb, self.serial, remote_graph, backend, threads, runs, warmup,
                                         self.binary), check=False)    # its log says more than its exit code
        return to_measurement(parse_benchmark_model(log))


def connect(device: str, local_binary: str | None = None) -> Phone:
    """The phone named by ``--device``, with benchmark_model on it (pushed from
    ``local_binary`` when given); a CifarEdgeError says what is missing."""
    adb = find_adb()
    serial = parse_device(device)
    try:
        listing = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CifarEdgeError(f"`adb devices` failed ({e}); restart the adb server with `adb kill-server`") from None
    phone = Phone(adb, pick_serial(parse_devices(listing), serial))
    if local_binary:
        if not Path(local_binary).is_file():
            raise CifarEdgeError(f"--benchmark-binary {local_binary} does not exist; download LiteRT's "
                                 "android_aarch64 benchmark_model and pass its path")
        phone.run(push_command(adb, phone.serial, local_binary, REMOTE_BINARY))
        phone.run([adb, "-s", phone.serial, "shell", "chmod", "755", REMOTE_BINARY])
    found = phone.run([adb, "-s", phone.serial, "shell", f"ls {REMOTE_BINARY} 2>/dev/null || echo missing"])
    if "missing" in found or REMOTE_BINARY not in found:
        raise CifarEdgeError(f"benchmark_model is not on {phone.serial} at {REMOTE_BINARY}; download LiteRT's "
                             "android_aarch64 benchmark_model and pass --benchmark-binary PATH")
    return phone
