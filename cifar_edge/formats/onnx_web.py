"""The browser: the .onnx in onnxruntime-web (WebAssembly, SIMD, threads where the page is
cross-origin isolated) inside headless Chromium, as a bench row timed in the page with
``performance.now()``, so what a web app's user waits for is what is measured.

Everything about onnxruntime-web is in this module (the browser host is ``_browser``).  It
needs three things a Python install does not bring: Chromium (``apt-get install chromium``),
Playwright's Python package (the ``test`` extra) and onnxruntime-web from npm
(``npm install --prefix .tools onnxruntime-web@1.31.1``, or ``$CIFAR_EDGE_ORT_WEB`` naming its
``dist`` folder); without them the rows say which is missing.
"""
from __future__ import annotations

from pathlib import Path

from ._base import Backend, Runner, default_threads, register
from ._browser import CODEC_JS, npm_folder, open_in_browser

ORT_WEB_VERSION = "1.31.1"
INSTALL_ORT = f"onnxruntime-web is not installed: npm install --prefix .tools onnxruntime-web@{ORT_WEB_VERSION}"

# The page: loads the model once, then runs batches handed over as base64 float32 and times
# single-image runs itself.
PAGE = """<!doctype html><meta charset="utf-8"><title>cifar-edge onnxruntime-web</title>
<script type="module">
import * as ort from "/ort/ort.wasm.min.mjs";
""" + CODEC_JS + """
const params = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = crossOriginIsolated ? Number(params.get("threads")) : 1;
ort.env.wasm.simd = true;
let stage = "model";     // onnxruntime-web's wasm loads with the session
try {
  const session = await ort.InferenceSession.create("/model", {executionProviders: ["wasm"]});
  const input = session.inputNames[0], output = session.outputNames[0];
  const feed = (b64, shape, dtype) => ({[input]: new ort.Tensor(dtype, decode(b64, dtype), shape)});
  window.runBatch = async (b64, shape, dtype) => {
    const y = (await session.run(feed(b64, shape, dtype)))[output];
    return [encode(y.data), y.type];
  };
  window.timeRuns = async (b64, shape, dtype, runs, warmup) => {
    const f = feed(b64, shape, dtype), times = [];
    for (let i = 0; i < warmup; i++) await session.run(f);
    for (let i = 0; i < runs; i++) { const t0 = performance.now(); await session.run(f); times.push(performance.now() - t0); }
    return times;
  };
  window.ready = {threads: ort.env.wasm.numThreads, isolated: crossOriginIsolated, version: ort.env.versions.web,
                  kernels: "wasm, SIMD"};
} catch (e) { window.ready = {error: String(e), stage}; }
</script>"""


def ort_web_dist() -> Path:
    """onnxruntime-web's ``dist`` folder: ``$CIFAR_EDGE_ORT_WEB``, else from ``.tools``."""
    return npm_folder("onnxruntime-web/dist", "ort.wasm.min.mjs", "CIFAR_EDGE_ORT_WEB", INSTALL_ORT)


def open_ort_web(path, threads: int | None = None) -> Runner:
    """onnxruntime-web's wasm backend in headless Chromium on an .onnx: normalized float32 in,
    float32 out; single-image and batch times come from the page (``Runner.timer``)."""
    return open_in_browser("onnxruntime-web", PAGE, path, {"ort": ort_web_dist()}, threads or default_threads(), "onnxruntime-web")


register(backends=(
    Backend("onnxruntime-web", ("onnx",), "browser", True,
            "onnxruntime-web (wasm, SIMD, threads) in headless Chromium, timed in the page", open_ort_web),
))
