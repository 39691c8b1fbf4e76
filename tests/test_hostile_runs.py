"""Issue 30, "trust nothing a run folder holds": each failure the red-team pass found, re-run
the way it was found (the CLI in a fresh process, hostile files built here with tests/hostile.py)
and answered with a correct result or one true error line, never a traceback."""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

import cifar_edge.serve
from cifar_edge.formats import BACKENDS
import hostile
from cifar_edge.serve import Predictor, check_host, make_server

ROOT = Path(__file__).resolve().parents[1]
TFLITE, ONNX = "tflite-float32.tflite", "onnx-float32.onnx"


def cli(*args, timeout=600) -> subprocess.CompletedProcess:
    """``python -m cifar_edge ARGS`` in a new process, stdout and stderr piped."""
    return subprocess.run([sys.executable, "-m", "cifar_edge", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error: ")]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run (cnn-tiny, 300 synthetic images, 1 epoch) with its float .tflite and .onnx."""
    run = tmp_path_factory.mktemp("hostile") / "clean" / "run"
    r = cli("train", "--model", "cnn-tiny", "--data", "synthetic", "--epochs", "1", "--limit", "300",
            "--batch-size", "64", "--out", run)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("export", run, "--variant", "tflite-float32", "--variant", "onnx-float32", "--check-images", "100")
    assert r.returncode == 0, r.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def hostile_run(run, tmp_path_factory):
    """The run with two lying export.json entries: one without a variant, one whose file is a
    real model outside the run (../../outside/evil.tflite)."""
    bad = hostile.copy_run(run, tmp_path_factory.mktemp("hostile") / "a" / "run")
    hostile.entry_without_variant(bad, like=TFLITE)
    outside = hostile.entry_pointing_outside(bad, like=TFLITE, variant="tflite-evil")
    assert outside.is_file() and outside.parent == bad.parent / "outside"
    return bad


@pytest.fixture(scope="module")
def served(hostile_run):
    """`cifar-edge serve HOSTILE_RUN --port 0` in its own process: (url, stop() -> its stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "cifar_edge", "serve", str(hostile_run), "--port", "0",
                             "--threads", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()
    url, deadline = None, time.monotonic() + 300
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            found = re.search(r"at (http://\S+?)/? ", lines.get(timeout=1))
            url = found and found.group(1)
        except queue.Empty:
            pass
    if url is None:
        proc.kill()
        pytest.fail(f"serve did not start: {proc.stderr.read()[-2000:]}")
    stderr = []

    def stop() -> str:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            stderr.append(proc.communicate(timeout=60)[1])
        return stderr[0] if stderr else proc.stderr.read()
    yield url, stop
    stop()


# --------------------------------------------------------------------------- 1: chunked uploads
def test_signed_and_malformed_chunk_sizes_are_refused_at_once(served):
    """-1 used to read to EOF (past the 20 MB limit), -5 to raise a ValueError in the serve
    terminal; now a bad size is a 400 and a size past the limit (running total) a 413, answered
    before the rest is read: our side never closes, so reading to EOF would run into the timeout."""
    url, _ = served
    for size in (b"-1", b"-5", b"+5", b"0x5", b" 5", b"1_0", b"zz"):
        reply = hostile.send_raw(url, hostile.chunked_upload([(size, b"\0" * 65536)], last=b""))
        assert hostile.status_of(reply) == 400, (size, reply[:200])
        assert b"malformed chunked upload" in reply
    assert hostile.status_of(hostile.send_raw(url, hostile.chunked_upload([(b"2000000", b"")], last=b""))) == 413
    ten_mb = b"\0" * 10_000_000
    reply = hostile.send_raw(url, hostile.chunked_upload([(b"%x" % len(ten_mb), ten_mb), (b"989681", b"")], last=b""))
    assert hostile.status_of(reply) == 413 and b"limit is 20 MB" in reply
    reply = hostile.send_raw(url, hostile.chunked_upload([(b"a;name=x", b"\0" * 10)]))   # extensions are fine
    assert hostile.status_of(reply) == 400 and b"cannot read 'the upload' as an image" in reply
    png = _png()
    reply = hostile.send_raw(url, hostile.valid_chunks(png))
    assert hostile.status_of(reply) == 200, reply[:300]


def _png() -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- 2, 4: lying export.json
def test_serve_lists_and_runs_only_entries_it_can_trust(served, hostile_run):
    url, _ = served
    reply = hostile.get_raw(url, "/api/models")
    assert hostile.status_of(reply) == 200
    described = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert {m["variant"] for m in described["models"]} == {"keras", "tflite-float32", "onnx-float32"}
    assert "outside" not in json.dumps(described) and "evil" not in json.dumps(described)
    reply = hostile.send_raw(url, b"POST /api/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: "
                             b"%d\r\n\r\n" % len(_png()) + _png())
    assert {r["variant"] for r in json.loads(reply.partition(b"\r\n\r\n")[2])["results"]} == \
        {"keras", "tflite-float32", "onnx-float32"}
    for path in ("/model/../../outside/evil.tflite", f"/model/{TFLITE}", "/model/../config.json"):
        assert hostile.status_of(hostile.get_raw(url, path)) == 404, path


def test_report_skips_the_entries_it_cannot_trust(hostile_run):
    r = cli("report", hostile_run)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert re.search(r"skipping entry 'novariant.tflite': no valid variant", r.stderr), r.stderr
    assert re.search(r"skipping entry 'evil.tflite': export.json names '../../outside/evil.tflite', which leads "
                     r"to \S+outside/evil.tflite, outside", r.stderr), r.stderr
    page = (hostile_run / "report.html").read_text()
    assert "tflite-float32" in page and "evil" not in page and "outside" not in page


def test_the_browser_route_hands_out_only_listed_files_inside_export(run, tmp_path, monkeypatch):
    """GET /model/<file> serves the .onnx export.json lists, inside export/, and nothing else:
    not an entry pointing outside, not a listed name that became a link out."""
    page = cifar_edge.serve.page_runtime()                                       # as if onnxruntime-web were here
    monkeypatch.setitem(BACKENDS, page.name, dataclasses.replace(page, page_assets=lambda: tmp_path))
    good = Predictor(run, threads=1)
    assert good.browser_file["file"] == ONNX
    with _serving(good) as url:
        reply = hostile.get_raw(url, f"/model/{ONNX}")
        assert hostile.status_of(reply) == 200 and reply.endswith((run / "export" / ONNX).read_bytes())
        for path in (f"/model/{TFLITE}", "/model/../config.json", "/model/export.json"):
            assert hostile.status_of(hostile.get_raw(url, path)) == 404, path

    outside = hostile.copy_run(run, tmp_path / "b" / "run")
    hostile.entry_pointing_outside(outside, like=ONNX, variant="onnx-float32", secret=b"SECRET", key=ONNX)
    pointed = Predictor(outside, threads=1)
    assert pointed.browser_file is None and "onnx-float32" not in {m.variant for m in pointed.models}
    with _serving(pointed) as url:
        reply = hostile.get_raw(url, "/model/../../outside/evil.onnx")
        assert hostile.status_of(reply) == 404 and b"SECRET" not in reply

    linked = hostile.copy_run(run, tmp_path / "c" / "run")
    good = Predictor(linked, threads=1)
    hostile.replace_with_link_out(linked, ONNX, b"LINKED SECRET")   # swapped after serve loaded it
    with _serving(good) as url:
        reply = hostile.get_raw(url, f"/model/{ONNX}")
        assert hostile.status_of(reply) == 404 and b"SECRET" not in reply
    assert "onnx-float32" not in {m.variant for m in Predictor(linked, threads=1).models}


class _serving:
    def __init__(self, predictor):
        self.httpd = make_server(predictor, "127.0.0.1", 0)

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_inside_run_refuses_every_way_out(tmp_path):
    """The one rule every reader of a run's own files uses: inside, or a one-line error."""
    from cifar_edge.errors import CifarEdgeError
    from cifar_edge.runs import inside_run
    folder = tmp_path / "run" / "export"
    folder.mkdir(parents=True)
    (folder / "model.tflite").write_bytes(b"ok")
    (folder / "sub").mkdir()
    assert inside_run(folder, "model.tflite", "export.json") == (folder / "model.tflite").resolve()
    assert inside_run(folder, "sub/../model.tflite", "export.json") == (folder / "model.tflite").resolve()
    secret = tmp_path / "secret.tflite"
    secret.write_bytes(b"SECRET")
    (folder / "link.tflite").symlink_to(secret)
    for relative in ("../../secret.tflite", str(secret), "link.tflite", ".", "sub/..", "", None, 3, "a\0b"):
        with pytest.raises(CifarEdgeError, match="export.json names") as e:
            inside_run(folder, relative, "export.json")
        assert "\n" not in str(e.value) and "export again" in str(e.value)


# --------------------------------------------------------------------------- 3: --host
def test_serve_refuses_an_empty_host_and_the_lan_without_public(run, capsys):
    r = cli("serve", run, "--host", "", timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert error_lines(r.stderr) == [error_lines(r.stderr)[0]] and "--host is empty" in r.stderr
    r = cli("serve", run, "--host", "0.0.0.0", timeout=120)
    assert r.returncode == 2 and "add --public" in error_lines(r.stderr)[0]
    for host in ("127.0.0.1", "localhost", "127.0.0.2"):
        check_host(host)
    check_host("0.0.0.0", public=True)                  # phones on the LAN: still possible, with a warning
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in capsys.readouterr().err


# --------------------------------------------------------------------------- 5: bounded threads
def test_connections_beyond_the_cap_get_503_not_a_thread(run, monkeypatch):
    monkeypatch.setattr(cifar_edge.serve, "MAX_CONNECTIONS", 2)
    with _serving(Predictor(run, threads=1, variants=["keras"])) as url:
        before = threading.active_count()
        held = [hostile.stalled_connection(url) for _ in range(2)]
        time.sleep(0.5)
        reply = hostile.get_raw(url, "/api/models")
        assert hostile.status_of(reply) == 503 and b"busy" in reply
        assert threading.active_count() <= before + 2
        for sock in held:
            sock.close()
        for _ in range(50):               # the held threads see the hang-up and free their slots
            if hostile.status_of(reply := hostile.get_raw(url, "/api/models")) == 200:
                break
            time.sleep(0.1)
        assert hostile.status_of(reply) == 200


# --------------------------------------------------------------------------- 6, 7: bench
def test_bench_with_no_row_that_ran_exits_1(run, tmp_path):
    r = cli("bench", run, "--no-export", "--variant", "tflite-int8", "--runtime", "litert", "--threads", "1",
            "--runs", "2", "--warmup", "1", "--limit", "50", "--no-reference", "--out", tmp_path / "bench")
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert len(error_lines(r.stderr)) == 1 and "no row ran" in error_lines(r.stderr)[0]
    assert json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"][0]["status"] == "skipped"


def test_bench_with_a_folder_that_is_not_a_run_is_an_error(run, tmp_path):
    notes = hostile.not_a_run(tmp_path / "notes")
    r = cli("bench", run, "--with", notes, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    [line] = error_lines(r.stderr)
    assert f"--with {notes} is not a run folder" in line and "`cifar-edge train` or `optimize`" in line


# --------------------------------------------------------------------------- 8: predict
def test_predict_prints_the_good_image_and_one_line_for_the_bad(run, tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png())
    bad = hostile.unreadable_image(tmp_path / "bad.png")
    r = cli("predict", run, good, bad, "--top", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert rows[0] == ["rank", "class", "probability"] and [row[0] for row in rows[1:]] == ["1", "2", "3"]
    [line] = error_lines(r.stderr)
    assert "cannot read" in line and "bad.png" in line


# --------------------------------------------------------------------------- the serve terminal
def test_the_serve_terminal_names_each_skipped_entry_and_has_no_traceback(served):
    _, stop = served
    stderr = stop()
    assert "Traceback" not in stderr and "ValueError" not in stderr, stderr[-3000:]
    assert "skipping entry 'novariant.tflite': no valid variant" in stderr
    assert "skipping entry 'evil.tflite': export.json names '../../outside/evil.tflite'" in stderr
