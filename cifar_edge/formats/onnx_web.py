"""The browser: the .onnx in onnxruntime-web (WebAssembly, SIMD, threads where the page is
cross-origin isolated) inside headless Chromium, as a bench row timed in the page with
``performance.now()``, so what a web app's user waits for is what is measured.

Everything about onnxruntime-web is in this module.  It needs three things a Python install
does not bring: Chromium (``apt-get install chromium``), Playwright's Python package (the
``test`` extra) and onnxruntime-web from npm (``npm install --prefix .tools onnxruntime-web@1.31.1``,
or ``$CIFAR_EDGE_ORT_WEB`` naming its ``dist`` folder); without them the rows say which is missing.
"""
from __future__ import annotations

import base64
import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import Backend, Runner, Unavailable, default_threads, register

ORT_WEB_VERSION = "1.31.1"
INSTALL_ORT = f"onnxruntime-web is not installed: npm install --prefix .tools onnxruntime-web@{ORT_WEB_VERSION}"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# The page: loads the model once, then runs batches handed over as base64 float32 and times
# single-image runs itself.
PAGE = """<!doctype html><meta charset="utf-8"><title>cifar-edge onnxruntime-web</title>
<script type="module">
import * as ort from "/ort/ort.wasm.min.mjs";
const params = new URLSearchParams(location.search);
ort.env.wasm.wasmPaths = "/ort/";
ort.env.wasm.numThreads = crossOriginIsolated ? Number(params.get("threads")) : 1;
ort.env.wasm.simd = true;
const decode = (b64) => new Float32Array(Uint8Array.from(atob(b64), c => c.charCodeAt(0)).buffer);
const encode = (f32) => { let s = ""; const u = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000)); return btoa(s); };
try {
  const session = await ort.InferenceSession.create("/model.onnx", {executionProviders: ["wasm"]});
  const input = session.inputNames[0], output = session.outputNames[0];
  const feed = (b64, shape) => ({[input]: new ort.Tensor("float32", decode(b64), shape)});
  window.runBatch = async (b64, shape) => encode((await session.run(feed(b64, shape)))[output].data);
  window.timeRuns = async (b64, shape, runs, warmup) => {
    const f = feed(b64, shape), times = [];
    for (let i = 0; i < warmup; i++) await session.run(f);
    for (let i = 0; i < runs; i++) { const t0 = performance.now(); await session.run(f); times.push(performance.now() - t0); }
    return times;
  };
  window.ready = {threads: ort.env.wasm.numThreads, isolated: crossOriginIsolated, version: ort.env.versions.web};
} catch (e) { window.ready = {error: String(e)}; }
</script>"""


def ort_web_dist() -> Path:
    """onnxruntime-web's ``dist`` folder: ``$CIFAR_EDGE_ORT_WEB``, else ``.tools`` in the working
    directory or beside this checkout."""
    candidates = [os.environ.get("CIFAR_EDGE_ORT_WEB")] + [
        str(root / ".tools" / "node_modules" / "onnxruntime-web" / "dist")
        for root in (Path.cwd(), Path(__file__).resolve().parents[2])]
    for c in filter(None, candidates):
        if (Path(c) / "ort.wasm.min.mjs").is_file():
            return Path(c)
    raise Unavailable(INSTALL_ORT)


def chromium() -> str:
    path = os.environ.get("CIFAR_EDGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise Unavailable("Chromium is not installed: apt-get install chromium (or set CIFAR_EDGE_CHROMIUM)")
    return path


class _Handler(http.server.SimpleHTTPRequestHandler):
    """The page, the model and onnxruntime-web's files, cross-origin isolated so that the wasm
    backend may use threads (SharedArrayBuffer)."""
    def __init__(self, *args, model: Path, dist: Path, **kwargs):
        self.model, self.dist = model, dist
        super().__init__(*args, directory=str(dist), **kwargs)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        if path == "/":
            self._send(PAGE.encode(), "text/html")
        elif path == "/model.onnx":
            self._send(self.model.read_bytes(), "application/octet-stream")
        elif path.startswith("/ort/"):
            self.path = path[len("/ort"):]
            super().do_GET()
        else:
            self.send_error(404)

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def open_ort_web(path, threads: int | None = None) -> Runner:
    """onnxruntime-web's wasm backend in headless Chromium on an .onnx: normalized float32 in,
    float32 out; single-image and batch times come from the page (``Runner.timer``)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Unavailable("Playwright is not installed: pip install playwright (the test extra)") from None
    dist, browser_path, path = ort_web_dist(), chromium(), Path(path)
    threads = threads or default_threads()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Handler, model=path, dist=dist))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/?threads={threads}")
        page.wait_for_function("window.ready !== undefined", timeout=60_000)
        ready = page.evaluate("window.ready")
    except PlaywrightError as e:
        playwright.stop()
        server.shutdown()
        raise CifarEdgeError(f"headless Chromium could not start the onnxruntime-web page: {str(e).splitlines()[0][:160]}") from None
    if "error" in ready:
        playwright.stop()
        server.shutdown()
        raise CifarEdgeError(f"onnxruntime-web cannot load {path.name} ({ready['error'][:160]}); "
                             "it may use an op the wasm backend lacks: bench the .onnx on onnxruntime instead")

    def args(x):
        x = np.ascontiguousarray(x, np.float32)
        return base64.b64encode(x.tobytes()).decode(), list(x.shape)

    def call(x):
        b64, shape = args(x)
        out = page.evaluate("([b, s]) => window.runBatch(b, s)", [b64, shape])
        return np.frombuffer(base64.b64decode(out), np.float32).reshape(len(x), -1).copy()

    def timer(x, runs, warmup):
        b64, shape = args(x)
        return page.evaluate("([b, s, r, w]) => window.timeRuns(b, s, r, w)", [b64, shape, runs, warmup])

    def close():
        browser.close()
        playwright.stop()
        server.shutdown()

    notes = [f"onnxruntime-web {ready['version']} wasm, SIMD, {ready['threads']} thread(s)"
             + ("" if ready["isolated"] else " (page not cross-origin isolated: no threads)")]
    return Runner("onnxruntime-web", str(path), 0, "float32", ready["threads"], notes, call,
                  timer=timer, close=close)


register(backends=(
    Backend("onnxruntime-web", ("onnx",), "browser", True,
            "onnxruntime-web (wasm, SIMD, threads) in headless Chromium, timed in the page", open_ort_web),
))
