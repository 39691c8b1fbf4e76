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
from ._browser import CODEC_JS, WEBGPU_JS, npm_folder, open_in_browser, webgpu_placement

ORT_WEB_VERSION = "1.31.1"
INSTALL_ORT = f"onnxruntime-web is not installed: npm install --prefix .tools onnxruntime-web@{ORT_WEB_VERSION}"

# The page: loads the model once, then runs batches handed over as base64 float32 and times
# single-image runs itself.  ``{ep}`` is wasm or webgpu (its bundle also holds the wasm kernels that
# run what the WebGPU EP does not take); a WebGPU page first finds its adapter.
PAGE = """<!doctype html><meta charset="utf-8"><title>cifar-edge onnxruntime-web</title>
<script type="module">
import * as ort from "/ort/{bundle}";
""" + CODEC_JS + WEBGPU_JS + """
const params = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = crossOriginIsolated ? Number(params.get("threads")) : 1;
ort.env.wasm.simd = true;
let stage = "{ep}" === "webgpu" ? "webgpu" : "model";     // onnxruntime-web's wasm loads with the session
try {
  const adapter = "{ep}" === "webgpu" ? await webgpuAdapter() : null;
  stage = "model";
  const session = await ort.InferenceSession.create("/model", {executionProviders: ["{ep}"]});
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
                  kernels: "{kernels}", adapter};
} catch (e) { window.ready = {error: String(e), stage}; }
</script>"""
BUNDLES = {"wasm": ("ort.wasm.min.mjs", "wasm, SIMD"), "webgpu": ("ort.webgpu.min.mjs", "WebGPU EP")}


def ort_web_dist() -> Path:
    """onnxruntime-web's ``dist`` folder: ``$CIFAR_EDGE_ORT_WEB``, else from ``.tools``."""
    return npm_folder("onnxruntime-web/dist", "ort.wasm.min.mjs", "CIFAR_EDGE_ORT_WEB", INSTALL_ORT)


def open_ort_web(path, threads: int | None = None, ep: str = "wasm") -> Runner:
    """onnxruntime-web in headless Chromium on an .onnx, on its wasm or WebGPU execution
    provider: normalized float32 in, float32 out; single-image and batch times come from the
    page (``Runner.timer``)."""
    bundle, kernels = BUNDLES[ep]
    page = PAGE.replace("{bundle}", bundle).replace("{ep}", ep).replace("{kernels}", kernels)
    name = "onnxruntime-web" if ep == "wasm" else f"onnxruntime-web-{ep}"
    placement = (lambda ready: webgpu_placement("onnxruntime-web WebGPU EP (wasm for the ops it does not take)",
                                                ready)) if ep == "webgpu" else None
    return open_in_browser(name, page, path, {"ort": ort_web_dist()}, threads or default_threads(), "onnxruntime-web",
                           placement=placement)


register(backends=(
    Backend("onnxruntime-web", ("onnx",), "browser", True,
            "onnxruntime-web (wasm, SIMD, threads) in headless Chromium, timed in the page", open_ort_web,
            page_assets=ort_web_dist),
    Backend("onnxruntime-web-webgpu", ("onnx",), "browser", False,
            "onnxruntime-web's WebGPU execution provider in headless Chromium, timed in the page",
            lambda p, t: open_ort_web(p, t, ep="webgpu")),
))
