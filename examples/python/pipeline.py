"""The steps around the model, shared by classify_litert.py and classify_onnx.py (Pillow and
numpy only): an image file -> the square RGB pixels a CIFAR model takes, and logits -> the
top-k classes.  The same steps as cifar-edge's own `predict` (cifar_edge/images.py) and the
Android app's contract package; the tests check they agree.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 64_000_000   # refuse decompression bombs before decoding


def load_image(path, size: int) -> np.ndarray:
    """Any image file -> size x size x 3 uint8 RGB: EXIF rotation applied, transparency on
    white, centre square crop, bilinear resize (as cifar-edge's own `predict`)."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"{path}: {im.width}x{im.height} pixels is too large; downscale it below 64 megapixels")
            im.draft("RGB", (1024, 1024))
            img = ImageOps.exif_transpose(im)
            img.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read {path} as an image ({type(e).__name__}); pass a PNG or JPEG file") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), np.uint8)


def top_k(logits: np.ndarray, labels: list, k: int = 5) -> list[tuple[str, float]]:
    """(label, probability) of the k best classes; equal scores keep class order (int8 outputs tie)."""
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-logits, kind="stable")[:k]
    return [(labels[i], float(probs[i])) for i in order]


def run_cli(description: str, make_classifier, argv=None) -> int:
    """`script MODEL IMAGE... [--top K] [--threads N]`: prints each image's top-k and latency.
    Exit code 2 when the model cannot be used, 1 when some image could not be read."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("model")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--top", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    try:
        clf = make_classifier(args.model, args.threads)
    except Exception as e:  # noqa: BLE001 - runtimes raise their own types; one line, no traceback
        print(f"error: {args.model}: {(str(e).splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        try:
            pixels = load_image(path, clf.size)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        t0 = time.perf_counter()
        top = clf.top(pixels, args.top)
        ms = (time.perf_counter() - t0) * 1e3
        print(f"{path}  ({ms:.2f} ms)")
        for label, p in top:
            print(f"  {p:7.2%}  {label}")
    return 1 if failed else 0
