"""LiteRT as :class:`Runner`s: the Interpreter (XNNPACK or builtin kernels) and the CompiledModel
API, timed and checked like every other runtime: normalized float32 in, float32 out.  Plus the
child-process probe for files that abort LiteRT instead of raising."""
from __future__ import annotations

import contextlib
import copy
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ..fileio import system_temp_prefix
from ._base import SOFTWARE_GPU_NOTE, Runner, Unavailable, default_threads, is_software_adapter, op_profile
from ._tflite_metadata import folded_normalization


# --------------------------------------------------------------------------- LiteRT interpreter
PIXEL_SNAP = 1e-3     # a denormalized value this close to a whole pixel is that pixel


def to_input(x, detail, folded=None):
    """Normalized float32 -> what the input tensor holds: pixels again for a file whose graph
    normalizes (``folded``: the (mean, std) it applies), quantized for integer I/O."""
    if folded is not None:
        x = x * np.asarray(folded[1], np.float32) + np.asarray(folded[0], np.float32)
        # Whole pixels (images not resized) come back exactly, as an app feeds them: the round
        # trip through normalization is off by ~1e-5, which moves a dynamic-range file's scores.
        whole = np.round(x)
        x = np.where(np.abs(x - whole) < PIXEL_SNAP, whole, x)
    if not np.issubdtype(detail["dtype"], np.integer):
        return x.astype(detail["dtype"])
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def from_output(y, detail):
    """The output tensor -> float32 (dequantized for integer I/O)."""
    scale, zero = detail["quantization"]
    if np.issubdtype(detail["dtype"], np.integer) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def open_litert(path, threads: int | None = None, xnnpack: bool = True) -> Runner:
    """The LiteRT interpreter (ai-edge-litert).  XNNPACK is LiteRT's default CPU delegate;
    when it refuses a model (ai-edge-litert 2.3 does for some sparse int8 files) we fall
    back to the builtin kernels and say so in ``notes``.  ``path`` may also be the file's
    bytes (a candidate being measured before it is written)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    threads = threads or default_threads()
    notes = []
    source = {"model_content": path} if isinstance(path, bytes) else {"model_path": str(path)}
    if isinstance(path, bytes):
        path = "<in memory>"

    def make(resolver):
        interp = Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        return interp

    try:
        if xnnpack:
            try:
                interp = make(OpResolverType.AUTO)
            except RuntimeError as e:
                notes.append(f"XNNPACK could not take this model ({str(e).splitlines()[0][:80]}); "
                             "ran on LiteRT's builtin kernels")
                interp = make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        else:
            interp = make(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    except (ValueError, RuntimeError) as e:
        raise cannot_load(path, e) from None
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    folded = folded_normalization(source.get("model_content") or source["model_path"])
    state = {"batch": int(inp["shape"][0])}

    def call(x):
        if len(x) != state["batch"]:
            interp.resize_tensor_input(inp["index"], [len(x), *inp["shape"][1:]])
            interp.allocate_tensors()
            state["batch"] = len(x)
        interp.set_tensor(inp["index"], to_input(x, inp, folded))
        interp.invoke()
        return from_output(interp.get_tensor(out["index"]), out)

    runtime = "litert" if xnnpack and not notes else "litert-builtin"
    return Runner(runtime, str(path), int(inp["shape"][1]), np.dtype(inp["dtype"]).name, threads, notes, call,
                  placement=placement(interp, "XNNPACK" if runtime == "litert" else None))


def cannot_load(path, error: Exception) -> CifarEdgeError:
    return CifarEdgeError(f"LiteRT cannot load {path} ({str(error).splitlines()[0][:120]}); the file is corrupt, "
                          "truncated or not a .tflite: export it again")


def io_details(path):
    """(interpreter, input detail, output detail) of a .tflite, read without running it."""
    from ai_edge_litert.interpreter import Interpreter
    try:
        interp = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as e:
        raise cannot_load(path, e) from None
    return interp, interp.get_input_details()[0], interp.get_output_details()[0]


def placement(interp, delegate: str | None) -> dict:
    """Which of the graph's nodes the delegate took and which fell back to LiteRT's builtin
    kernels.  A delegate replaces a convex part of the graph with one DELEGATE node whose inputs
    and outputs are that part's boundary, so its nodes are those found walking back from its
    outputs to its inputs; every other node runs on a builtin kernel."""
    ops = interp._get_ops_details()      # LiteRT's Python API lists nodes, delegate nodes last, but no placement
    own = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op["index"] for op in own for t in op["outputs"]}
    taken: set = set()
    partitions = 0
    for node in (op for op in ops if op["op_name"] == "DELEGATE"):
        partitions += 1
        boundary = {int(t) for t in node["inputs"]}
        todo = [int(t) for t in node["outputs"]]
        while todo:
            tensor = todo.pop()
            index = producer.get(tensor)
            if index is None or index in taken or tensor in boundary:
                continue
            taken.add(index)
            todo.extend(int(t) for t in own[index]["inputs"] if t >= 0)
    fallback: dict = {}
    for op in own:
        if op["index"] not in taken:
            fallback[op["op_name"]] = fallback.get(op["op_name"], 0) + 1
    return {"engine": delegate or "LiteRT builtin kernels", "nodes": len(own), "delegated": len(taken),
            "fallback": len(own) - len(taken), "partitions": partitions, "fallback_ops": fallback}


CONTROL_FLOW = ("WHILE", "IF", "CALL_ONCE", "CALL")     # ops that run other subgraphs


def profile_litert(path, threads, x, runs, xnnpack: bool = True) -> dict:
    """Per-op latency on LiteRT, whose Python API has no op profiler: each op is cut out of the
    graph into a one-op model, fed the very tensors it sees when the whole model runs ``x``, and
    timed alone on the same kernels (XNNPACK, or builtin).  Each time includes one invoke's
    overhead, and a one-op graph loses fusion across ops, so the sum is near, not equal to, p50."""
    import time
    nodes, untimed = [], []
    for node, interp, _ in cut_ops(Path(path).read_bytes(), x, threads or default_threads(), xnnpack):
        if "reason" in node:
            untimed.append(node)
            continue
        if interp is None:
            nodes.append({**node, "ms": 0.0})
            continue
        start = time.perf_counter()
        for _ in range(runs):
            interp.invoke()
        nodes.append({**node, "ms": (time.perf_counter() - start) * 1e3})
    kernels = "XNNPACK" if xnnpack else "builtin kernels"
    profile = op_profile(f"LiteRT interpreter, {kernels} (each op timed alone)", nodes, runs)
    return {**profile, "nodes": profile["nodes"] + len(untimed), "untimed": untimed}


def cut_ops(content: bytes, x, threads: int, xnnpack: bool):
    """Each op of a .tflite as a one-op model, loaded and invoked once on the inputs it gets when
    the whole model runs ``x``: yields (node, interpreter, the whole model's output tensor of
    the op).  ``node`` names the op, its kernel, and ``reason`` when it could not be cut out or
    run alone; the interpreter is None for an op computed from constants alone (fp16 weights'
    DEQUANTIZE: computed once, at load), whose output then stays a constant for the ops after."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from ai_edge_litert.tools import flatbuffer_utils as fb

    whole = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    whole.allocate_tensors()
    inp = whole.get_input_details()[0]
    whole.set_tensor(inp["index"], to_input(x[:1], inp, folded_normalization(content)))
    whole.invoke()
    model = fb.read_model_from_bytearray(bytearray(content))
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    folded: dict = {}     # tensors computed from constants alone -> their bytes
    for i, op in enumerate(model.subgraphs[0].operators):
        output = model.subgraphs[0].tensors[op.outputs[0]]      # names the node (the converter's names repeat)
        node = {"node": f"#{i} {output.name.decode(errors='replace').split(';')[0]}",
                "op": fb.opcode_to_name(model, op.opcodeIndex) or "?"}
        expected = whole.get_tensor(op.outputs[0])
        if node["op"] in CONTROL_FLOW:
            yield {**node, "reason": f"{node['op']} runs other subgraphs: not cut out alone"}, None, expected
            continue
        one, feeds = _one_op_model(model, op, folded)
        if not feeds:
            folded.update({t: whole.get_tensor(t).tobytes() for t in op.outputs})
            yield {**node, "kernel": "constant, at load"}, None, expected
            continue
        try:
            interp = Interpreter(model_content=bytes(fb.convert_object_to_bytearray(one)), num_threads=threads,
                                 experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
            for detail, tensor in zip(interp.get_input_details(), feeds):
                interp.set_tensor(detail["index"], whole.get_tensor(tensor))
            interp.invoke()
        except (RuntimeError, ValueError) as e:       # an op LiteRT will not run cut out alone
            yield {**node, "reason": str(e).splitlines()[0][:120]}, None, expected
            continue
        delegated = any(o["op_name"] == "DELEGATE" for o in interp._get_ops_details())
        yield {**node, "kernel": "XNNPACK" if delegated else "builtin"}, interp, expected


def _one_op_model(model, op, folded: dict):
    """``model`` reduced to ``op`` alone: its computed inputs become the graph's inputs (in the
    returned order, as whole-model tensor indices), but for those in ``folded`` (tensor -> bytes),
    computed from constants at load, which stay constants; its outputs are the graph's outputs,
    and only the tensors and weight buffers it uses are kept."""
    from ai_edge_litert.tools.flatbuffer_utils import BufferT, ModelT, SubGraphT
    graph = model.subgraphs[0]
    used = [t for t in dict.fromkeys([*op.inputs, *op.outputs, *(op.intermediates or [])]) if t >= 0]
    index = {t: i for i, t in enumerate(used)}
    buffers, tensors, feeds = [BufferT()], [], []
    for t in used:
        tensor = copy.copy(graph.tensors[t])
        data = model.buffers[tensor.buffer].data
        if t in folded:
            data = BufferT()
            data.data = np.frombuffer(folded[t], np.uint8)
            tensor.buffer = len(buffers)
            buffers.append(data)
        elif data is not None and len(data):
            tensor.buffer = len(buffers)
            buffers.append(model.buffers[graph.tensors[t].buffer])
        else:
            tensor.buffer = 0
            if t in op.inputs:
                feeds.append(t)
        tensors.append(tensor)
    one_op = copy.copy(op)
    one_op.inputs = [index.get(t, -1) for t in op.inputs]
    one_op.outputs = [index[t] for t in op.outputs]
    one_op.intermediates = [index.get(t, -1) for t in op.intermediates] if op.intermediates else op.intermediates
    sub = SubGraphT()
    sub.tensors, sub.operators = tensors, [one_op]
    sub.inputs, sub.outputs = [index[t] for t in feeds], one_op.outputs
    one = ModelT()
    one.version, one.operatorCodes, one.buffers, one.subgraphs = model.version, model.operatorCodes, buffers, [sub]
    one.description = b"one op of a cifar-edge profile"
    return one, feeds


_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interp = Interpreter(model_path=sys.argv[1], num_threads=1)
interp.allocate_tensors()
detail = interp.get_input_details()[0]
interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
interp.invoke()
"""
DEAD_RANGE = 1e-7     # an activation scale below this: the converter's stand-in for an all-zero calibration range


def check_litert_loads(path, name: str = ""):
    """Load and run ``path`` (a .tflite or its bytes) once in a child process first.

    LiteRT does not raise on some files it cannot run: it aborts the whole process
    (SIGABRT, no Python exception, nothing cleaned up).  Seen on the int8 file of a clustered
    tiny CNN whose ReLUs output only zeros on the calibration images: the converter gives such
    a tensor a near-zero scale, and the requantization multiplier of the next op is out of
    LiteRT's range.  A child that dies says so here, as an error naming those tensors."""
    import subprocess
    import sys
    import tempfile
    with tempfile.TemporaryDirectory(prefix=system_temp_prefix("probe")) as work:
        if isinstance(path, bytes):
            Path(work, "model.tflite").write_bytes(path)
            path = Path(work, "model.tflite")
        result = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                                timeout=600)
        if result.returncode >= 0:     # 0, or a Python error the in-process load will report properly
            return
        dead = dead_activation_tensors(path)
    what = name or Path(path).name
    cause = (f"{len(dead)} activation tensor(s) have an all-zero range on the calibration images "
             f"({', '.join(dead[:3])}{' ...' if len(dead) > 3 else ''}): those layers output only zeros, so the "
             "model is dead or collapsed there; check the run's accuracy, or calibrate on more --calibration-images"
             if dead else "export float or another variant")
    raise CifarEdgeError(f"LiteRT aborts the process loading {what} (signal {-result.returncode}); nothing was "
                         f"kept: {cause}")


def dead_activation_tensors(path) -> list[str]:
    """Names of the quantized non-constant tensors whose scale says 'all zeros when calibrated'
    (reading tensor details does not trigger the abort; allocating does)."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    computed = {d["index"] for d in interp.get_input_details()}     # activations: inputs and op outputs
    for op in interp._get_ops_details():  # noqa: SLF001 - the only way to tell weights from activations
        computed.update(op["outputs"])
    dead = []
    for detail in interp.get_tensor_details():
        scales = detail["quantization_parameters"]["scales"]
        if detail["index"] in computed and len(scales) == 1 and 0 < scales[0] < DEAD_RANGE:
            dead.append(detail["name"].split(";")[0])
    return dead



# --------------------------------------------------------------------------- CompiledModel
@contextlib.contextmanager
def native_stderr():
    """Capture what native code writes to fd 2 (LiteRT logs its accelerator set-up there and
    its Python exceptions carry only a source location); yields a list filled with the text."""
    captured = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace"))


def last_error(log: str) -> str:
    """The most telling line of a native log: its last ERROR line, else its last line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR" in ln or "Failed" in ln]
    return (errors or lines or [""])[-1][:160]


MESA_INSTALL = ("apt-get install -t bookworm-backports mesa-vulkan-drivers (Mesa 25: lavapipe, a software "
                "Vulkan driver, runs it on the CPU; bookworm's own Mesa 22 offers no usable adapter)")
NO_ADAPTER = f"no WebGPU adapter for LiteRT's GPU accelerator (no GPU, no Vulkan driver): {MESA_INSTALL}"


def gpu_adapter(log: str) -> dict | None:
    """The adapter LiteRT's WebGPU accelerator chose, from its log line ``Selected adapter: NAME,
    arch=..., vendor=..., backend=..., adapterType=...`` (the Python API does not say);
    ``software`` when it is the CPU emulating a GPU (lavapipe/llvmpipe, SwiftShader)."""
    line = next((ln.split("Selected adapter:", 1)[1].strip() for ln in log.splitlines() if "Selected adapter:" in ln),
                None)
    if line is None:
        return None
    name = re.split(r", \w+=", line)[0]
    facts = dict(re.findall(r"(\w+)=([^,]+)", line))
    return {"name": name, "backend": facts.get("backend"), "type": facts.get("adapterType"),
            "software": is_software_adapter(line)}


def runtime_shaped_ops(path) -> dict:
    """The ops whose output shape is known only at run time (a RESHAPE to a shape another op
    computes: tf.keras' Dense on a 4-D tensor becomes SHAPE, GATHER, REDUCE_PROD, PACK, RESHAPE),
    op name -> count.  LiteRT's GPU accelerator refuses such a graph whole ("only supports
    static-sized tensors") without naming an op; these are the ones to make static."""
    from ai_edge_litert.interpreter import Interpreter
    ops = Interpreter(model_path=str(path))._get_ops_details()   # noqa: SLF001 - the only node list
    computed = {t for op in ops for t in op["outputs"]}
    counts: dict = {}
    for op in ops:
        if op["op_name"] == "RESHAPE" and len(op["inputs"]) > 1 and op["inputs"][1] in computed:
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def refused_ops(log: str) -> dict:
    """What LiteRT's GPU accelerator logs when it refuses ops (its Python API says only
    ``is_fully_accelerated``): ``Following operations are not supported by GPU delegate:``, one
    ``OP: why`` line each, then ``N operations will run on the GPU, and the remaining M ...``.
    Returns placement fields: node counts per engine and the refused ops with their reasons."""
    lines = log.splitlines()
    start = next((i for i, ln in enumerate(lines) if "are not supported by GPU delegate" in ln), None)
    if start is None:
        return {}
    refused, counts = {}, None
    for ln in lines[start + 1:]:
        counts = re.search(r"(\d+) operations will run on the GPU, and the remaining (\d+)", ln)
        if counts:
            break
        op = re.match(r"([A-Z][A-Z0-9_]*): (.*)", ln.strip())
        if op and op.group(1) not in ("INFO", "WARNING", "ERROR"):
            refused.setdefault(op.group(1), op.group(2).strip())
    fields = {"fallback_engine": "CPU", "refused": refused,
              "fallback_ops": {op: 1 for op in refused}}      # the log names each op type once
    if counts:
        fields.update(delegated=int(counts.group(1)), fallback=int(counts.group(2)))
    return fields


# The GPU accelerator runs in a child process: loading it (Dawn) in a process that has imported
# TensorFlow segfaults (seen with TF 2.21 and ai-edge-litert 2.3.0), and the bench always has.
# The child imports LiteRT alone and answers pickled batches on its stdin/stdout.
_GPU_CHILD = """
import dataclasses, os, pickle, sys
from cifar_edge.formats._litert import open_compiled
replies, requests = os.fdopen(os.dup(1), "wb"), sys.stdin.buffer
os.dup2(2, 1)             # what native code prints (Dawn does, on fd 1) must not enter the replies
def send(*msg):
    pickle.dump(msg, replies)
    replies.flush()
try:
    runner = open_compiled(sys.argv[1], int(sys.argv[2]), gpu=True, enforce_f32=sys.argv[3] == "1", child=False)
except Exception as e:
    send("error", type(e).__name__, str(e))
    sys.exit(0)
send("ready", dataclasses.replace(runner, _call=None))
while True:
    try:
        x = pickle.load(requests)
    except EOFError:
        break
    try:
        send("ok", runner.run(x), runner.notes)
    except Exception as e:
        send("error", type(e).__name__, str(e))
"""


def _open_gpu_child(path, threads: int, enforce_f32: bool) -> Runner:
    """:func:`open_compiled` on the GPU in a child process (:data:`_GPU_CHILD`); its Runner here
    sends each batch there.  A child that dies is a failed row naming its signal."""
    import pickle
    import subprocess
    import sys
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", _GPU_CHILD, str(path), str(threads), "1" if enforce_f32 else "0"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def receive(what):
        try:
            reply = pickle.load(child.stdout)
        except EOFError:
            code = child.wait()
            raise CifarEdgeError(f"LiteRT's GPU accelerator crashed {what} {Path(path).name} (exit {code})") from None
        if reply[0] == "error":
            child.stdin.close()
            child.wait()
            kind = {"Unavailable": Unavailable, "CifarEdgeError": CifarEdgeError}.get(reply[1], RuntimeError)
            raise kind(reply[2])
        return reply[1:]

    def close():
        if child.poll() is None:
            child.stdin.close()
            child.wait(timeout=30)

    try:
        [runner] = receive("loading")
    except BaseException:
        close()
        raise

    def call(x):
        pickle.dump(x, child.stdin)
        child.stdin.flush()
        y, notes = receive("running")
        runner.notes[:] = notes
        return y

    runner._call, runner.close = call, close
    return runner


def open_compiled(path, threads: int | None = None, gpu: bool = False, enforce_f32: bool = False,
                  child: bool = True) -> Runner:
    """``CompiledModel.from_file`` on the CPU accelerator (XNNPACK), or the GPU accelerator
    (WebGPU through Dawn: Vulkan or GL) with CPU fallback for ops it refuses, at its default
    precision (fp16 kernels) or ``enforce_f32``.  Integer I/O is quantized here with the scales
    the file declares.  Unavailable when no WebGPU adapter exists: there is nothing to measure.
    The GPU runs in a child process unless ``child`` is False (the child itself)."""
    threads = threads or default_threads()
    if gpu and child:
        return _open_gpu_child(path, threads, enforce_f32)
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import CpuOptions, GpuOptions, Options

    accel = HardwareAccelerator.GPU | HardwareAccelerator.CPU if gpu else HardwareAccelerator.CPU
    with native_stderr() as log:
        try:
            model = CompiledModel.from_file(str(path), options=Options(
                hardware_accelerators=accel, cpu_options=CpuOptions(num_threads=threads),
                gpu_options=GpuOptions(enforce_f32=enforce_f32) if gpu else None))
            details = Interpreter(model_path=str(path))   # only for the I/O quantization scales
            inp, out = details.get_input_details()[0], details.get_output_details()[0]
        except (RuntimeError, ValueError) as e:
            err = e
        else:
            err = None
    if gpu and "No adapters found" in log[0]:
        raise Unavailable(NO_ADAPTER)
    if err is not None and gpu:      # the accelerator says why in its log (a plugin's warning is noise)
        why = [ln.strip().removeprefix("WARNING: ").removeprefix("ERROR: ") for ln in log[0].splitlines()
               if ln.startswith(("WARNING:", "ERROR:")) and not any(k in ln for k in ("plugin", "NPU", "InitGoogle"))]
        dynamic = runtime_shaped_ops(path) if any("static-sized" in w for w in why) else {}
        culprit = (f"its ops with a run-time shape, {', '.join(f'{op} x{n}' for op, n in dynamic.items())} (e.g. a "
                   "Dense on a 4-D tensor; a 1x1 Conv2D or a constant-shape Reshape avoids them); ") if dynamic else ""
        raise CifarEdgeError(f"LiteRT's GPU accelerator refused {Path(path).name}: {culprit}"      # the cause first:
                             + "; ".join([*why, str(err).splitlines()[-1].strip("└ ")])[:300])  # summaries cut the rest
    if err is not None:
        reason = last_error(log[0]) or str(err).splitlines()[0]
        raise CifarEdgeError(f"LiteRT CompiledModel cannot load {path} ({reason}); the file is corrupt, "
                             "truncated or not a .tflite: export it again")
    full = model.is_fully_accelerated()
    notes = [] if full else ["not fully accelerated: some ops ran on the CPU fallback"]
    # CompiledModel reports only whether the accelerator took every op; the node counts are the
    # interpreter's XNNPACK partition of the same file (the CPU accelerator is XNNPACK).
    if gpu:
        adapter = gpu_adapter(log[0])
        where = {"engine": f"LiteRT GPU accelerator (WebGPU), {'f32' if enforce_f32 else 'default precision, fp16'} "
                           "kernels, CPU fallback", "nodes": len(details._get_ops_details()),
                 "fully_accelerated": full, "adapter": adapter}
        where.update({"delegated": where["nodes"], "fallback": 0, "fallback_ops": {}} if full else refused_ops(log[0]))
        if where.get("refused"):
            notes[0] = f"not fully accelerated: {', '.join(where['refused'])} refused by the GPU accelerator, ran on the CPU"
        if adapter and adapter["software"]:
            notes.append(SOFTWARE_GPU_NOTE.format(adapter["name"]))
    else:
        details.allocate_tensors()          # the interpreter read for the I/O scales, now XNNPACK-delegated
        where = {**placement(details, "XNNPACK (CompiledModel CPU accelerator)"), "fully_accelerated": full}
    classes = int(out["shape"][-1])
    folded = folded_normalization(path)
    state = {"batch": 0}

    def buffers(batch):
        if batch != state["batch"]:
            model.resize_input_tensor(0, [batch, *map(int, inp["shape"][1:])])
            state.update(batch=batch, ins=model.create_input_buffers(0), outs=model.create_output_buffers(0))
        return state["ins"], state["outs"]

    def run(x):
        ins, outs = buffers(len(x))
        ins[0].write(np.ascontiguousarray(to_input(x, inp, folded)))
        model.run_by_index(0, ins, outs)
        y = outs[0].read(len(x) * classes, out["dtype"]).reshape(len(x), classes)
        return from_output(y, out)

    def call(x):
        if len(x) > 1 and "batched" not in state:
            # CompiledModel resizes the input but leaves some graphs' output at batch 1 (seen on
            # ConvNeXt's); running such a batch writes past the output buffer and corrupts the heap.
            _, outs = buffers(len(x))
            state["batched"] = int(outs[0].get_tensor_details()["shape"][0]) == len(x)
            if not state["batched"]:
                notes.append("CompiledModel does not resize this file's output past batch 1: batches ran image by image")
        if len(x) > 1 and not state["batched"]:
            return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])
        return run(x)

    name = ("litert-gpu-f32" if enforce_f32 else "litert-gpu") if gpu else "litert-compiled"
    return Runner(name, str(path), int(inp["shape"][1]), np.dtype(inp["dtype"]).name, threads, notes, call,
                  placement=where)

