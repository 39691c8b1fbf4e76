"""Headless Chromium as a runtime host, for the formats' browser backends: a local server
that sends the page, the model and the runtime's npm files cross-origin isolated (so wasm may
use threads), and a :class:`Runner` whose batches and timings go through the page.

A backend's page defines ``window.ready`` (``{threads, isolated, version?, kernels?}``, or
``{error, stage}`` where stage ``model`` means the runtime loaded but not the model),
``window.runBatch(b64, shape, dtype)`` returning ``[b64, dtype]``, and
``window.timeRuns(b64, shape, dtype, runs, warmup)`` returning milliseconds timed in the page
with ``performance.now()``; :data:`CODEC_JS` gives it the base64 <-> typed array helpers."""
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
from ._base import SOFTWARE_GPU_NOTE, Runner, Unavailable, is_software_adapter

# --enable-unsafe-webgpu: Linux Chromium hides WebGPU without it; headless, with no GPU, it then
# offers SwiftShader (Vulkan on the CPU) as a fallback adapter, which the WebGPU rows run on.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-unsafe-webgpu"]

CODEC_JS = """
const ARRAYS = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array};
const decode = (b64, dtype) => new ARRAYS[dtype](Uint8Array.from(atob(b64), c => c.charCodeAt(0)).buffer);
const encode = (a) => { let s = ""; const u = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode(...u.subarray(i, i + 0x8000)); return btoa(s); };
"""

# A page's WebGPU adapter: ``await webgpuAdapter()`` gives what ``ready.adapter`` reports, or throws
# (the page then sets ``ready = {error, stage: "webgpu"}``: the row is skipped, not failed).
WEBGPU_JS = """
const webgpuAdapter = async () => {
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu)");
  const a = await navigator.gpu.requestAdapter();
  if (!a) throw new Error("navigator.gpu.requestAdapter() found no adapter");
  const i = a.info || {};
  return {name: [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") || "unnamed",
          fallback: Boolean(i.isFallbackAdapter), f16: a.features.has("shader-f16")};
};
"""
NO_WEBGPU = "Chromium offers no WebGPU adapter here ({}); run Chromium 113 or newer (apt-get install chromium)"


def webgpu_placement(engine: str, ready: dict, nodes: int | None = None) -> dict:
    """A WebGPU page's row placement: the adapter (software when it is the browser's CPU
    fallback, SwiftShader), and whether the accelerator took the whole graph where the runtime says."""
    a = ready["adapter"]
    where = {"engine": engine, "adapter": {"name": a["name"], "backend": "WebGPU", "shader_f16": a["f16"],
                                           "software": a["fallback"] or is_software_adapter(a["name"])}}
    if "fullyAccelerated" in ready and nodes is not None:
        where.update(nodes=nodes, fully_accelerated=bool(ready["fullyAccelerated"]))
        if ready["fullyAccelerated"]:
            where.update(delegated=nodes, fallback=0, fallback_ops={})
    return where


def chromium() -> str:
    path = os.environ.get("CIFAR_EDGE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise Unavailable("Chromium is not installed: apt-get install chromium (or set CIFAR_EDGE_CHROMIUM)")
    return path


def npm_folder(package: str, probe: str, env: str, install: str) -> Path:
    """An npm package's folder holding ``probe``: ``$env``, else ``.tools/node_modules`` in the
    working directory or beside this checkout; Unavailable with the ``install`` command if absent."""
    candidates = [os.environ.get(env)] + [str(root / ".tools" / "node_modules" / package)
                                          for root in (Path.cwd(), Path(__file__).resolve().parents[2])]
    for c in filter(None, candidates):
        if (Path(c) / probe).is_file():
            return Path(c)
    raise Unavailable(install)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """``/``: the page; ``/model``: the model file; ``/<mount>/...``: a runtime's files."""
    def __init__(self, *args, page: str, model: Path, mounts: dict, **kwargs):
        self.page, self.model, self.mounts = page, model, mounts
        super().__init__(*args, **kwargs)

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        if path == "/":
            return self._send(self.page.encode(), "text/html")
        if path == "/model":
            return self._send(self.model.read_bytes(), "application/octet-stream")
        mount, _, rest = path[1:].partition("/")
        if mount in self.mounts and ".." not in rest:
            self.directory, self.path = str(self.mounts[mount]), "/" + rest
            return super().do_GET()
        self.send_error(404)

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def open_in_browser(name: str, page: str, path, mounts: dict, threads: int, what: str, to_page=None,
                    from_page=None, input_size: int = 0, input_dtype: str = "float32", placement=None) -> Runner:
    """Serve ``page`` with the model at ``path`` and ``mounts`` (URL prefix -> folder), open it
    in headless Chromium and wait for ``window.ready``.  ``to_page(x) -> array`` turns normalized
    float32 images into the model's input (default: as they are); ``from_page(array) -> float32``
    reads its output back.  ``what`` names the runtime in errors and notes; ``input_size`` and
    ``input_dtype`` describe the file's input (0: not fixed); ``placement(ready) -> dict`` turns
    what the page reported into the row's op placement."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise Unavailable("Playwright is not installed: pip install playwright (the test extra)") from None
    browser_path, path = chromium(), Path(path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Handler, page=page, model=path, mounts=mounts))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    held = []        # what close() releases, last opened first: the server, Playwright, the browser

    def close():
        for release in reversed(held):
            try:
                release()
            except Exception:  # noqa: BLE001 - a browser that crashed must not keep the rest open
                pass

    held.append(server.shutdown)
    try:
        playwright = sync_playwright().start()
        held.append(playwright.stop)
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        held.append(browser.close)
        tab = browser.new_page()
        tab.goto(f"http://127.0.0.1:{server.server_address[1]}/?threads={threads}")
        tab.wait_for_function("window.ready !== undefined", timeout=60_000)
        ready = tab.evaluate("window.ready")
        if "error" in ready and ready.get("stage") == "webgpu":
            raise Unavailable(NO_WEBGPU.format(ready["error"][:160]))
        if "error" in ready:
            hint = ("it may use an op the browser runtime lacks: bench the file on its own runtime instead"
                    if ready.get("stage") == "model" else "its wasm did not load: install its npm package again")
            raise CifarEdgeError(f"{what} cannot load {path.name} ({ready['error'][:160]}); {hint}")
        where = placement(ready) if placement else None
    except PlaywrightError as e:
        close()
        raise CifarEdgeError(f"headless Chromium could not start the {what} page: {str(e).splitlines()[0][:160]}") from None
    except BaseException:
        close()
        raise
    to_page = to_page or (lambda x: x)
    from_page = from_page or (lambda y: y)

    def args(x):
        a = np.ascontiguousarray(to_page(np.ascontiguousarray(x, np.float32)))
        return base64.b64encode(a.tobytes()).decode(), list(a.shape), a.dtype.name

    def call(x):
        b64, dtype = tab.evaluate("(a) => window.runBatch(...a)", list(args(x)))
        return from_page(np.frombuffer(base64.b64decode(b64), dtype).reshape(len(x), -1).copy())

    def timer(x, runs, warmup):
        return tab.evaluate("(a) => window.timeRuns(...a)", [*args(x), runs, warmup])

    notes = [f"{what}{' ' + ready['version'] if ready.get('version') else ''} {ready.get('kernels', 'wasm')}, "
             f"{ready['threads']} thread(s)" + ("" if ready["isolated"] else " (page not cross-origin isolated: no threads)")]
    if (where or {}).get("adapter", {}).get("software"):
        notes.append(SOFTWARE_GPU_NOTE.format(where["adapter"]["name"]))
    return Runner(name, str(path), input_size, input_dtype, ready["threads"], notes, call, timer=timer,
                  close=close, placement=where)
