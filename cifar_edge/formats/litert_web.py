"""The browser, for the .tflite: LiteRT.js (npm ``@litertjs/core``; LiteRT compiled to
WebAssembly with XNNPACK, threads where the page is cross-origin isolated) in headless
Chromium, timed in the page like the onnxruntime-web rows (the browser host is ``_browser``).

LiteRT.js takes float32, int32 and uint8 tensors, so float-I/O files and the uint8-I/O int8
file run; an int8-I/O file is a skipped row saying so.  Its compiled model keeps the file's
batch of one, so batches run image by image in the page (no batch-throughput figures).
Install: ``npm install --prefix .tools @litertjs/core@2.5.3`` (or ``$CIFAR_EDGE_LITERT_JS``
naming the ``@litertjs`` folder that holds ``core`` and ``wasm-utils``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._base import Backend, Runner, Unavailable, default_threads, register
from ._browser import CODEC_JS, WEBGPU_JS, npm_folder, open_in_browser, webgpu_placement
from ._litert import from_output, io_details, to_input
from ._tflite_metadata import folded_normalization

LITERT_JS_VERSION = "2.5.3"
INSTALL_LITERT_JS = f"LiteRT.js is not installed: npm install --prefix .tools @litertjs/core@{LITERT_JS_VERSION}"
TENSOR_TYPES = ("float32", "int32", "uint8")     # what a LiteRT.js Tensor can hold

# Its ES module imports the bare name "@litertjs/wasm-utils": the import map resolves it.  ``{accelerator}``
# is wasm or webgpu; a WebGPU page first finds its adapter, and reads outputs back from the GPU.
PAGE = """<!doctype html><meta charset="utf-8"><title>cifar-edge LiteRT.js</title>
<script type="importmap">{"imports": {"@litertjs/wasm-utils": "/litertjs/wasm-utils/dist/index.js"}}</script>
<script type="module">
import {loadLiteRt, loadAndCompile, Tensor} from "/litertjs/core/dist/index.js";
""" + CODEC_JS + WEBGPU_JS + """
const params = new URLSearchParams(location.search);
const threads = crossOriginIsolated ? Number(params.get("threads")) : 1;
let stage = "{accelerator}" === "webgpu" ? "webgpu" : "runtime";
try {
  const adapter = "{accelerator}" === "webgpu" ? await webgpuAdapter() : null;
  stage = "runtime";
  await loadLiteRt("/litertjs/core/wasm/", {threads: crossOriginIsolated});
  stage = "model";
  const model = await loadAndCompile("/model", {accelerator: "{accelerator}", cpuOptions: {numThreads: threads}});
  const runOne = async (x, shape) => {
    const input = new Tensor(x, shape);
    try {
      const outputs = await model.run(input);
      const y = (await outputs[0].data()).slice();
      outputs.forEach((t) => t.delete());
      return y;
    } finally { input.delete(); }
  };
  const images = (b64, shape, dtype) => {
    const x = decode(b64, dtype), per = x.length / shape[0], one = [1, ...shape.slice(1)];
    return Array.from({length: shape[0]}, (_, i) => [x.subarray(i * per, (i + 1) * per), one]);
  };
  window.runBatch = async (b64, shape, dtype) => {
    const parts = [];
    for (const [x, one] of images(b64, shape, dtype)) parts.push(await runOne(x, one));
    const out = new parts[0].constructor(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return [encode(out), {Float32Array: "float32", Int32Array: "int32", Uint8Array: "uint8", Int8Array: "int8"}[out.constructor.name]];
  };
  // Timed like the onnxruntime-web page: the input made once, each run until its outputs exist.
  window.timeRuns = async (b64, shape, dtype, runs, warmup) => {
    const [[x, one]] = images(b64, shape, dtype), input = new Tensor(x, one), times = [];
    const run = async () => {       // until the output is read back: a GPU's run returns before it is done
      const outputs = await model.run(input);
      await outputs[0].data();
      outputs.forEach((t) => t.delete());
    };
    try {
      for (let i = 0; i < warmup; i++) await run();
      for (let i = 0; i < runs; i++) { const t0 = performance.now(); await run(); times.push(performance.now() - t0); }
    } finally { input.delete(); }
    return times;
  };
  window.ready = {threads, isolated: crossOriginIsolated, kernels: "{kernels}",
                  fullyAccelerated: model.isFullyAccelerated, adapter};
} catch (e) { window.ready = {error: String(e), stage}; }
</script>"""


def litert_js_folder() -> Path:
    """The ``@litertjs`` npm folder (``core`` and ``wasm-utils``): ``$CIFAR_EDGE_LITERT_JS``, else from ``.tools``."""
    folder = npm_folder("@litertjs", "core/dist/index.js", "CIFAR_EDGE_LITERT_JS", INSTALL_LITERT_JS)
    if not (folder / "wasm-utils" / "dist" / "index.js").is_file():     # core's one dependency
        raise Unavailable(f"{folder} has no wasm-utils: {INSTALL_LITERT_JS}")
    return folder


KERNELS = {"wasm": "wasm (XNNPACK)", "webgpu": "WebGPU"}


def open_litert_web(path, threads: int | None = None, accelerator: str = "wasm") -> Runner:
    """LiteRT.js on its wasm (XNNPACK) or WebGPU accelerator in headless Chromium: normalized
    float32 in, float32 out, quantized and dequantized here with the scales the file declares,
    as for LiteRT."""
    details, inp, out = io_details(path)
    for what, detail in (("input", inp), ("output", out)):
        if np.dtype(detail["dtype"]).name not in TENSOR_TYPES:
            raise Unavailable(f"LiteRT.js tensors hold {', '.join(TENSOR_TYPES)} only; this file's {what} is "
                              f"{np.dtype(detail['dtype']).name} (bench its float-I/O or uint8-I/O sibling)")
    folder = litert_js_folder()
    folded = folded_normalization(path)
    version = json.loads((folder / "core" / "package.json").read_text())["version"]
    nodes = len(details._get_ops_details())
    page = PAGE.replace("{accelerator}", accelerator).replace("{kernels}", KERNELS[accelerator])
    placement = (lambda ready: _placement(ready, nodes)) if accelerator == "wasm" else \
        (lambda ready: webgpu_placement("LiteRT.js WebGPU accelerator", ready, nodes))
    return open_in_browser("litert-web" if accelerator == "wasm" else f"litert-web-{accelerator}", page, path,
                           {"litertjs": folder}, threads or default_threads(),
                           f"LiteRT.js {version}", to_page=lambda x: to_input(x, inp, folded),
                           from_page=lambda y: from_output(y, out), input_size=int(inp["shape"][1]),
                           input_dtype=np.dtype(inp["dtype"]).name, placement=placement)


def _placement(ready: dict, nodes: int) -> dict:
    """LiteRT.js says only whether its accelerator took the whole graph: then every node ran on
    XNNPACK; else which nodes fell back is not known from the page."""
    full = bool(ready.get("fullyAccelerated"))
    where = {"engine": "LiteRT.js CPU accelerator (XNNPACK in wasm)", "nodes": nodes, "fully_accelerated": full}
    return {**where, "delegated": nodes, "fallback": 0, "fallback_ops": {}} if full else where


register(backends=(
    Backend("litert-web", ("tflite",), "browser", True,
            "LiteRT.js (wasm, XNNPACK, threads) in headless Chromium, timed in the page", open_litert_web,
            batched=False),
    Backend("litert-web-webgpu", ("tflite",), "browser", False,
            "LiteRT.js's WebGPU accelerator in headless Chromium, timed in the page",
            lambda p, t: open_litert_web(p, t, accelerator="webgpu"), batched=False),
))
