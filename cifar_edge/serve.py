"""`cifar-edge serve RUN`: a local web page to try a run's exported files on your own images.

One real HTTP server (the standard library's ThreadingHTTPServer): GET / is the page,
GET /api/models lists what is loaded, POST /api/predict takes the raw bytes of one image and
answers, for every exported format and the Keras model, the top-5 and the latency.  Bad
uploads (not an image, too large, empty) get a JSON error the page shows; nothing crashes.
Where onnxruntime-web is installed, the page also runs the run's .onnx in the browser itself
(GET /ort/* and /model/*), beside the server's answers: on WebGPU where the browser has it.
The run folder is input like an upload: only export.json's files inside RUN/export are opened
or handed out, at most MAX_CONNECTIONS connections get a thread, and beyond loopback it listens only with --public.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from . import console
from .errors import CifarEdgeError
from .export import MANIFEST, read_manifest
from .fileio import to_json
from .images import read_image
from .formats import (BACKENDS, MODEL_VARIANT, ExportOptions, Runner, Unavailable, Variant, get_format, model_runner,
                      open_model)
from .runs import RunFolder, inside_run, load_run

MAX_UPLOAD_BYTES = 20_000_000
TIMED_RUNS = 5
SOCKET_TIMEOUT_S = 30      # a stalled client frees its thread after this long
MAX_CONNECTIONS = 16       # connections served at once; more get 503 instead of a thread each
_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


@dataclass
class Loaded:
    variant: str
    file: str
    size_bytes: int
    runner: Runner


class Predictor:
    """A run's Keras model and every file in RUN/export, loaded once and warmed up."""

    def __init__(self, run_dir, threads: int | None = None, variants: list[str] | None = None):
        loaded = load_run(run_dir)
        self.class_names, self.norm, self.input_size = loaded.class_names, loaded.norm, loaded.input_size
        self.run = loaded.run.root
        model_file = loaded.run.require_model()
        self.models = [Loaded(MODEL_VARIANT, model_file.name, model_file.stat().st_size, model_runner(loaded))]
        manifest = read_manifest(RunFolder(self.run).export_dir)
        unknown = sorted(set(variants or []) - {e["variant"] for e in manifest.values()} - {MODEL_VARIANT})
        if unknown:
            raise CifarEdgeError(f"{', '.join(unknown)} not exported in {self.run / 'export'}; "
                                 "export it first or drop it from --variant")
        for entry in manifest.values():
            if entry["variant"] == MODEL_VARIANT or (variants and entry["variant"] not in variants):
                continue                      # the exported .h5 is the model already loaded above
            try:
                path = inside_run(RunFolder(self.run).export_dir, entry["file"], MANIFEST)
                self.models.append(Loaded(entry["variant"], entry["file"], path.stat().st_size,
                                          open_model(path, threads=threads)))
            except (CifarEdgeError, OSError) as e:
                console.warn(f"not serving {entry['variant']}: {e}")
        if variants:
            self.models = [m for m in self.models if m.variant in variants]
        if not manifest:
            console.warn(f"{self.run / 'export'} has no exported files; serving the Keras model only "
                         "(`cifar-edge export RUN --all` adds every format)")
        self.browser_file = _browser_file(manifest, variants)
        self._lock = threading.Lock()     # interpreters are not thread-safe
        blank = self.norm.apply_numpy(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))
        for m in self.models:
            m.runner.run(blank)

    def describe(self) -> dict:
        browser = None
        if self.browser_file is not None:
            browser = {"model": f"/model/{self.browser_file['file']}", "variant": self.browser_file["variant"],
                       "size_bytes": self.browser_file["size_bytes"], "labels": self.class_names,
                       "mean": [float(v) for v in self.norm.mean], "std": [float(v) for v in self.norm.std]}
        return {"run": str(self.run), "input_size": self.input_size, "classes": len(self.class_names),
                "models": [{"variant": m.variant, "file": m.file, "runtime": m.runner.runtime,
                            "size_bytes": m.size_bytes, "notes": m.runner.notes} for m in self.models],
                "browser": browser}

    def predict(self, data: bytes, name: str = "the upload", top: int = 5) -> dict:
        """Top-k and median latency of every loaded model on one encoded image."""
        if not data:
            raise CifarEdgeError("the upload is empty; choose a PNG or JPEG image")
        x = self.norm.apply_numpy(read_image(bytes(data), self.input_size, name)[None])
        results = []
        with self._lock:
            for m in self.models:
                times = []
                for _ in range(TIMED_RUNS):
                    t0 = time.perf_counter()
                    logits = m.runner.run(x)[0]
                    times.append(time.perf_counter() - t0)
                probs = np.exp(logits - logits.max())
                probs /= probs.sum()
                order = np.argsort(-logits, kind="stable")[:top]
                results.append({"variant": m.variant, "file": m.file, "runtime": m.runner.runtime,
                                "size_bytes": m.size_bytes, "latency_ms": round(float(np.median(times)) * 1e3, 3),
                                "top": [{"label": self.class_names[i], "index": int(i),
                                         "probability": round(float(probs[i]), 5)} for i in order]})
        return {"image": name, "input_size": self.input_size, "results": results}


def page_runtime():
    """The browser runtime the page runs a file in (the backend that serves its scripts, ``page_assets``)."""
    return next(b for b in BACKENDS.values() if b.page_assets is not None)


def _browser_file(manifest: dict, variants) -> dict | None:
    """The file the page runs in the browser (float32 first, then int8), when its runtime is installed."""
    backend = page_runtime()
    try:
        backend.page_assets()
    except Unavailable:
        return None
    names = [Variant(get_format(f), ExportOptions(quantization=q)).name for f in backend.formats for q in ("none", "int8")]
    for name in names:
        entry = next((e for e in manifest.values() if e["variant"] == name), None)
        if entry is not None and (not variants or name in variants):
            return entry
    return None


_ORT_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm"}


def _ort_file(dist, name: str) -> bool:
    """A file of onnxruntime-web's dist folder the page may load (no paths, only its scripts and wasm)."""
    return dist is not None and "/" not in name and Path(name).suffix in _ORT_TYPES and (dist / name).is_file()


def make_server(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    page = resources.files("cifar_edge.web").joinpath("index.html").read_bytes()
    ort_dist = page_runtime().page_assets() if predictor.browser_file is not None else None

    class Handler(BaseHTTPRequestHandler):
        server_version = "cifar-edge"
        timeout = SOCKET_TIMEOUT_S

        def log_message(self, fmt, *args):     # keep the terminal for our own lines
            pass

        def handle(self):
            """A client that hangs up or stalls ends its own request quietly, not with a traceback."""
            try:
                super().handle()
            except _DISCONNECTS:
                self.close_connection = True

        def _send(self, status: int, body: bytes, content_type: str):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            # cross-origin isolated, so that onnxruntime-web may use threads (SharedArrayBuffer)
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: dict):
            self._send(status, to_json(payload).encode(), "application/json")

        def _read_body(self) -> bytes:
            """The request body, sent with Content-Length or chunked (HTTP/1.1 streaming uploads)."""
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked()
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                raise _UploadError(HTTPStatus.BAD_REQUEST, "bad Content-Length; send the image bytes as the body")
            _check_size(length)
            return self.rfile.read(length)

        def _read_chunked(self) -> bytes:
            """Chunks until the last (size 0); each size strictly hex (no sign, no spaces) and checked
            against the limit before its bytes are read."""
            body = bytearray()
            while True:
                size = _chunk_size(self.rfile.readline(100))
                if size == 0:
                    for _ in range(100):                             # optional trailers, then the blank line
                        if not self.rfile.readline(1000).strip():
                            return bytes(body)
                    raise _malformed_chunks()
                _check_size(len(body) + size)
                data = self.rfile.read(size)
                if len(data) != size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                    raise _malformed_chunks()
                body += data

        def do_GET(self):
            if self.path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/api/models":
                self._json(HTTPStatus.OK, predictor.describe())
            elif self.path.startswith("/ort/") and _ort_file(ort_dist, self.path[len("/ort/"):]):
                name = self.path[len("/ort/"):]
                self._send(HTTPStatus.OK, (ort_dist / name).read_bytes(), _ORT_TYPES[Path(name).suffix])
            elif predictor.browser_file is not None and self.path == f"/model/{predictor.browser_file['file']}":
                try:         # checked again now: the file may have been swapped for a link since loading
                    path = inside_run(RunFolder(predictor.run).export_dir, predictor.browser_file["file"], MANIFEST)
                    self._send(HTTPStatus.OK, path.read_bytes(), "application/octet-stream")
                except (CifarEdgeError, OSError):
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"{self.path} is no longer servable; restart serve"})
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}; open / instead"})

        def do_POST(self):
            if self.path.split("?")[0] != "/api/predict":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"POST images to /api/predict, not {self.path}"})
                return
            try:
                data = self._read_body()
            except _UploadError as e:
                self.close_connection = True
                self._json(e.status, {"error": str(e)})
                return
            name = unquote(self.headers.get("X-Filename") or "")[:200] or "the upload"   # the page percent-encodes it
            try:
                self._json(HTTPStatus.OK, predictor.predict(data, name))
            except CifarEdgeError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except Exception as e:  # noqa: BLE001 - one bad request must not take the server down
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"prediction failed: {type(e).__name__}: {e}"})

    try:
        return _BoundedServer((host, port), Handler, MAX_CONNECTIONS)
    except OSError as e:
        raise CifarEdgeError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None


class _BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most ``limit`` at once: one more is answered 503 at once
    (not queued, not given a thread), so a flood of connections cannot exhaust the machine."""
    daemon_threads = True

    def __init__(self, address, handler, limit: int):
        super().__init__(address, handler)
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request, self.limit)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse_busy(sock, limit: int):
    body = to_json({"error": f"the server is busy ({limit} connections open); try again shortly"}).encode()
    try:
        sock.settimeout(1)
        sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    except OSError:
        pass


class _UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_HEX = re.compile(rb"[0-9A-Fa-f]+")


def _chunk_size(line: bytes) -> int:
    """A chunk-size line's size: hex digits, optionally ';' and extensions, then CRLF; else 400."""
    if not line.endswith(b"\n"):
        raise _malformed_chunks()
    digits = line.rstrip(b"\r\n").split(b";", 1)[0]
    if not _HEX.fullmatch(digits):
        raise _malformed_chunks()
    return int(digits, 16)


def _malformed_chunks() -> _UploadError:
    return _UploadError(HTTPStatus.BAD_REQUEST, "malformed chunked upload; send the image bytes with "
                                                "Content-Length or valid chunks (hex sizes)")


def _check_size(length: int):
    if length > MAX_UPLOAD_BYTES:
        raise _UploadError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"the upload is {length / 1e6:.1f} MB; the limit is "
                           f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB: send a smaller image")


def check_host(host: str, public: bool = False):
    """Refuse an empty --host (it means every interface) and any address beyond this machine
    without ``public``; with it, warn what that exposes."""
    if not host.strip():
        raise CifarEdgeError("--host is empty, which would listen on every interface; pass 127.0.0.1 (this "
                             "machine), or --host 0.0.0.0 --public for phones on the LAN")
    if _loopback(host):
        return
    if not public:
        raise CifarEdgeError(f"--host {host} is reachable beyond this machine; add --public to serve the run's "
                             "model files and predictions to your network, or use --host 127.0.0.1")
    console.warn(f"listening on {host}: anyone who can reach this machine can upload images and download "
                 "the exported models")


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False              # a host name: it may resolve anywhere


def serve(run_dir, host: str = "127.0.0.1", port: int = 8000, threads: int | None = None,
          variants: list[str] | None = None, ready=None, public: bool = False):
    """Load the run and serve until interrupted; ``ready(url)`` is called once listening.
    Beyond loopback only with ``public`` (see check_host)."""
    check_host(host, public)
    predictor = Predictor(run_dir, threads, variants)
    server = make_server(predictor, host, port)
    url = f"http://{host}:{server.server_address[1]}/"
    if ready:
        ready(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.info("stopped")
    finally:
        server.server_close()
