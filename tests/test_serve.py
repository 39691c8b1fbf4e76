"""`cifar-edge serve`: a real HTTP server answering top-5 and latency for every exported
format; bad uploads get clear JSON errors; the page works end to end in headless Chromium."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

import cifar_edge.images
import cifar_edge.serve
from cifar_edge.cli import app
from cifar_edge.formats._browser import CHROMIUM_FLAGS
from cifar_edge.inference import predict_files
from cifar_edge.runs import load_run
from cifar_edge.serve import Predictor, make_server


@pytest.fixture(scope="module")
def server(exported_run):
    run, _ = exported_run
    httpd = make_server(Predictor(run, threads=1), "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def post(url: str, data: bytes, name: str = "x.png"):
    """(status, JSON body) of an upload."""
    request = urllib.request.Request(f"{url}/api/predict", data=data, method="POST", headers={"X-Filename": name})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_every_exported_format_answers_top5_and_latency(server, exported_run, photo_files):
    run, exported = exported_run
    status, body = post(server, photo_files["photo.jpg"].read_bytes(), "photo.jpg")
    assert status == 200, body
    rows = {r["variant"]: r for r in body["results"]}
    assert set(rows) == {"keras", *exported}
    for r in rows.values():
        assert len(r["top"]) == 5 and r["latency_ms"] > 0 and r["size_bytes"] > 0
        assert 0 < sum(t["probability"] for t in r["top"]) <= 1.0001
    expected = predict_files(load_run(run), [photo_files["photo.jpg"]])[0]["top"][0]["class"]
    assert rows["keras"]["top"][0]["label"] == expected
    assert rows["tflite-float32"]["top"][0]["label"] == expected
    with urllib.request.urlopen(f"{server}/api/models") as r:
        assert [m["variant"] for m in json.loads(r.read())["models"]][0] == "keras"


@pytest.mark.parametrize("name", ["gray.png", "alpha.png", "palette.gif", "rotated.jpg"])
def test_grayscale_alpha_palette_and_rotated_images_work(server, photo_files, name):
    status, body = post(server, photo_files[name].read_bytes(), name)
    assert status == 200, body


def test_bad_uploads_get_clear_errors_and_the_server_lives_on(server, photo_files, monkeypatch):
    status, body = post(server, photo_files["not_an_image.png"].read_bytes(), "not_an_image.png")
    assert status == 400 and "cannot read 'not_an_image.png' as an image" in body["error"]
    status, body = post(server, b"", "empty.png")
    assert status == 400 and "empty" in body["error"]
    monkeypatch.setattr(cifar_edge.images, "MAX_PIXELS", 100_000)        # photo.jpg is 1200x900
    status, body = post(server, photo_files["photo.jpg"].read_bytes(), "photo.jpg")
    assert status == 400 and "too large" in body["error"]
    monkeypatch.setattr(cifar_edge.serve, "MAX_UPLOAD_BYTES", 1000)
    status, body = post(server, photo_files["rgb.png"].read_bytes() + b"\0" * 4000, "big.png")
    assert status == 413 and "limit" in body["error"]
    monkeypatch.undo()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server}/nope")
    assert e.value.code == 404
    assert post(server, photo_files["rgb.png"].read_bytes())[0] == 200


def _raw(url: str, request: bytes, read=True, timeout=60) -> bytes:
    """Send raw HTTP bytes; the whole reply (or b"" when the server hangs up first)."""
    import socket
    from urllib.parse import urlparse
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
        sock.sendall(request)
        if not read:
            return b""
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        return reply


def test_chunked_uploads_are_read(server, photo_files):
    body = photo_files["rgb.png"].read_bytes()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:100], body[100:]))
    reply = _raw(server, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n")
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), reply[:300]
    assert json.loads(payload)["results"][0]["top"]


def test_clients_that_hang_up_or_stall_end_quietly(exported_run, photo_files, capfd, monkeypatch):
    """A client gone before its answer leaves no traceback; one that stops sending mid-upload is
    dropped after the socket timeout instead of holding a server thread forever."""
    run, _ = exported_run
    monkeypatch.setattr(cifar_edge.serve, "SOCKET_TIMEOUT_S", 1)
    httpd = make_server(Predictor(run, threads=1, variants=["tflite-float32"]), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        body = photo_files["rgb.png"].read_bytes()
        for _ in range(3):    # gone before the answer is written: the write hits a closed socket
            _raw(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
                 read=False)
        stalled = _raw(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + body[:10],
                       timeout=30)
        assert stalled == b""                      # dropped by the server's timeout, well before ours
        assert post(url, body)[0] == 200           # and the server lives on
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "Traceback" not in capfd.readouterr().err


def test_cli_serve_rejects_a_bad_run_and_variant(exported_run, tmp_path):
    run, _ = exported_run
    r = CliRunner().invoke(app, ["serve", str(tmp_path)])
    assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["serve", str(run), "--variant", "tflite-int9"])
    assert r.exit_code == 2 and "tflite-int9 not exported" in r.output


def _ort_web_here() -> bool:
    from cifar_edge.formats import Unavailable
    from cifar_edge.formats.onnx_web import ort_web_dist
    try:
        return bool(ort_web_dist())
    except Unavailable:
        return False


def _chromium():
    from cifar_edge.formats import Unavailable
    from cifar_edge.formats._browser import chromium
    try:
        path = chromium()
    except Unavailable as e:
        pytest.skip(f"{e} (as .ci/run does)")
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright missing: pip install -e '.[test]'").sync_playwright
    return path, sync_playwright


def test_the_page_in_headless_chromium(server, exported_run, photo_files, tmp_path):
    path, sync_playwright = _chromium()
    _, exported = exported_run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.wait_for_function("document.getElementById('meta').textContent.includes('models')")
            page.set_input_files("#file", str(photo_files["photo.jpg"]))
            page.wait_for_selector("#results tbody tr", timeout=60_000)
            rows = page.locator("#results tbody tr")
            browser_row = _ort_web_here()       # the .onnx also runs in the page (onnxruntime-web)
            assert rows.count() == len(exported) + browser_row    # keras and every exported file
            _, api = post(server, photo_files["photo.jpg"].read_bytes())
            keras_top1 = api["results"][0]["top"][0]["label"]
            assert page.locator("tr[data-variant='keras'] .label").first.text_content() == keras_top1
            if browser_row:        # a 32x32 image: no resizing, so the page's .onnx run matches the server's
                page.set_input_files("#file", str(photo_files["rgb.png"]))
                page.wait_for_function("document.getElementById('status').textContent.startsWith('rgb.png')")
                _, api = post(server, photo_files["rgb.png"].read_bytes())
                server_onnx = next(r for r in api["results"] if r["variant"] == "onnx-float32")
                cells = page.locator("tr[data-variant='onnx-float32 in browser'] .label").all_text_contents()
                assert cells == [t["label"] for t in server_onnx["top"]]
                engine = page.locator("tr[data-variant='onnx-float32 in browser']").text_content()
                webgpu = page.evaluate("async () => Boolean(navigator.gpu && await navigator.gpu.requestAdapter())")
                assert "onnxruntime-web" in engine and ("WebGPU on " if webgpu else "wasm, ") in engine
            assert all(t.endswith(" ms") for t in page.locator("td.latency").all_text_contents())
            assert page.locator("#error").text_content() == ""
            page.screenshot(path=str(tmp_path / "results.png"))

            page.set_input_files("#file", str(photo_files["not_an_image.png"]))
            page.wait_for_function("document.getElementById('error').textContent.length > 0")
            assert "cannot read" in page.locator("#error").text_content()
            assert page.locator("#results").is_hidden()

            page.set_input_files("#file", str(photo_files["alpha.png"]))
            page.wait_for_selector("#results tbody tr", state="visible", timeout=60_000)
            assert page.locator("#error").text_content() == ""
        finally:
            browser.close()
