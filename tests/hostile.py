"""Builders of hostile inputs, as a red-team pass makes them: raw HTTP bodies, run folders whose
own files lie (export.json entries without a variant, or pointing outside the run, class lists
that disagree with the model), what a killed process leaves behind, folders that are not runs,
files that are not images, model files that carry code.  Each fix adds its builder here, so the
corpus grows."""
from __future__ import annotations

import copy
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from cifar_edge.fileio import read_json, write_json

MANIFEST = Path("export") / "export.json"


# --------------------------------------------------------------------------- HTTP
def chunked_upload(chunks, last: bytes = b"0\r\n\r\n") -> bytes:
    """A POST /api/predict with Transfer-Encoding: chunked; ``chunks`` are (size line, payload)
    pairs written as given, so the size may lie, carry a sign or not be hex at all."""
    body = b"".join(size + b"\r\n" + payload + (b"\r\n" if payload else b"") for size, payload in chunks)
    return (b"POST /api/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + body + last)


def valid_chunks(data: bytes, size: int = 100) -> bytes:
    """``data`` as an honest chunked upload, for checking the server still answers."""
    return chunked_upload([(b"%x" % len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size)])


def send_raw(url: str, request: bytes, timeout: float = 20) -> bytes:
    """Send raw bytes without closing our side; the whole reply (b"" when the server hangs up
    without one).  A server that waits for more (reading to EOF) runs into ``timeout``."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=timeout) as sock:
        reply = b""
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass                  # a server that answers early and closes on unread bytes resets the connection
        return reply


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0


def get_raw(url: str, path: str, timeout: float = 20) -> bytes:
    """GET ``path`` exactly as written ('..' and all: no client-side normalizing)."""
    return send_raw(url, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), timeout)


def stalled_connection(url: str) -> socket.socket:
    """A connection that sent half a request line and then nothing: it holds a server thread."""
    u = urlparse(url)
    sock = socket.create_connection((u.hostname, u.port), timeout=20)
    sock.sendall(b"GET /api/mod")
    return sock


# --------------------------------------------------------------------------- run folders
def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a run (its exports and export.json included) to make hostile."""
    shutil.copytree(run, dest, ignore=shutil.ignore_patterns("bench", "report.html"))
    return dest


def manifest_entries(run: Path) -> dict:
    return read_json(Path(run) / MANIFEST)["exports"]


def add_entry(run: Path, key: str, entry) -> Path:
    """Put ``entry`` into RUN/export/export.json under ``key`` (replacing one of that key)."""
    path = Path(run) / MANIFEST
    doc = read_json(path) if path.is_file() else {"exports": {}, "failures": {}}
    doc["exports"][key] = entry
    write_json(path, doc)
    return path


def entry_without_variant(run: Path, like: str, key: str = "novariant.tflite") -> dict:
    """A copy of the entry of file ``like`` with its 'variant' removed."""
    entry = copy.deepcopy(manifest_entries(run)[like])
    del entry["variant"]
    add_entry(run, key, entry)
    return entry


def entry_pointing_outside(run: Path, like: str, variant: str, secret: bytes | None = None,
                           name: str = "evil", key: str | None = None) -> Path:
    """An entry (a copy of file ``like``'s, named ``variant``, under ``key``, default its own
    name) whose file is ../../outside/<name><suffix>: a real model copied beside the run, or
    ``secret`` bytes.  Returns the outside file."""
    run = Path(run)
    entry = copy.deepcopy(manifest_entries(run)[like])
    outside = run.parent / "outside" / f"{name}{Path(like).suffix}"
    outside.parent.mkdir(exist_ok=True)
    if secret is None:
        shutil.copyfile(run / "export" / like, outside)
    else:
        outside.write_bytes(secret)
    entry.update(variant=variant, file=f"../../outside/{outside.name}")
    add_entry(run, key or outside.name, entry)
    return outside


def replace_with_link_out(run: Path, file: str, secret: bytes) -> Path:
    """Replace RUN/export/<file> by a symlink to a file outside the run holding ``secret``:
    export.json still names it, by a plain name."""
    target = Path(run).parent / "outside" / f"linked-{file}"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(secret)
    link = Path(run) / "export" / file
    link.unlink()
    link.symlink_to(target)
    return target


def not_a_run(root: Path) -> Path:
    """A folder that exists and holds files, but no model and no config.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notes.txt").write_text("just notes\n")
    return root


def unreadable_image(path: Path) -> Path:
    """A file named like an image that holds text."""
    path.write_text("this is text, not pixels\n")
    return path


# --------------------------------------------------------------------------- killed runs, edited runs, off-size images


def dead_pid() -> int:
    """The PID of a process that has exited (what a kill -9'd writer leaves in its temp names)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def unfinished_train(finished: Path, dest: Path) -> Path:
    """A training run killed before its first checkpoint: config.json and labels.txt, no model."""
    dest.mkdir(parents=True)
    for name in ("config.json", "labels.txt"):
        shutil.copy(finished / name, dest / name)
    return dest


def with_class_names(finished: Path, dest: Path, names: list[str]) -> Path:
    """A copy of a finished run whose config.json lists ``names`` instead of the model's classes."""
    shutil.copytree(finished, dest, ignore=shutil.ignore_patterns("export", "bench", "evaluation", ".lock"))
    config = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**config, "class_names": names}))
    return dest


def image_folder(root: Path, classes: int, per_class: int, off: int, off_size=(48, 40), seed: int = 0) -> Path:
    """``root/<class>/*.png``: ``classes * per_class`` images of 32x32, of which the first ``off``
    are ``off_size`` (width, height) instead."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            w, h = off_size if c * per_class + i < off else (32, 32)
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return root


def stale_system_temps(tmpdir: Path, pid: int) -> list[Path]:
    """Work folders in the system temp folder as a process ``pid`` leaves them when kill -9'd
    mid-export (a SavedModel being converted, a LiteRT probe)."""
    made = []
    for kind in ("savedmodel", "probe"):
        folder = tmpdir / f"cifar-edge-{kind}~{pid}~x1y2"
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"half")
        made.append(folder)
    return made


# --------------------------------------------------------------------------- model files that carry code
def lambda_model(path: Path, marker: Path, build) -> Path:
    """A Keras model file (``path``'s suffix: .h5, .keras, or none for a SavedModel) built by
    ``build(lam)`` around a Lambda layer whose code writes ``marker`` when it runs: loading it
    without the user's word must never create the file."""
    from cifar_edge._tf import keras
    code = f"lambda x: (__import__('pathlib').Path({str(marker)!r}).write_text('ran'), x)[1]"
    model = build(eval(code))                       # noqa: S307 - the hostile file, built by the test itself
    if path.suffix:
        model.save(path)
    else:
        keras.models.save_model(model, path, save_format="tf")
    marker.unlink(missing_ok=True)                  # building and saving traced it
    return path
