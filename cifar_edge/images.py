"""Reading user images (predict, explain, serve): any file, mode or size, to the square RGB
pixels a CIFAR model expects.  One place, so every command sees the same pixels."""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CifarEdgeError

MAX_PIXELS = 64_000_000   # larger than any camera photo; refuse decompression bombs early


def open_rgb(item, label: str | None = None) -> Image.Image:
    """A path, encoded bytes (an upload), PIL image or uint8-like array -> RGB PIL image,
    centre-cropped to a square.

    Transparent pixels become white (not black), EXIF rotation is applied, and the crop
    keeps object shapes undistorted (CIFAR models only ever saw square images).
    """
    label = label or ("the upload" if isinstance(item, (bytes, bytearray)) else str(item))
    if isinstance(item, np.ndarray):
        arr = np.clip(item, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise CifarEdgeError(f"{label}: array of shape {item.shape} is not an image; "
                                 "pass (H, W), (H, W, 3) or (H, W, 4) pixels in 0..255")
        img = Image.fromarray(arr)
    elif isinstance(item, Image.Image):
        img = item
        _check_pixels(img.width, img.height, label)
    else:
        if isinstance(item, (bytes, bytearray)):
            source = io.BytesIO(item)
        else:
            source = Path(item)
            if source.is_dir():
                raise CifarEdgeError(f"'{source}' is a folder, not an image; pass the path of a PNG or JPEG file")
            if not source.is_file():
                raise CifarEdgeError(f"image '{source}' not found; pass the path of a PNG or JPEG file")
        try:
            with warnings.catch_warnings():      # our own size limit below says it in one line
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(source) as im:
                    _check_pixels(im.width, im.height, label)
                    im.draft("RGB", (1024, 1024))          # fast JPEG downscale of huge photos
                    img = ImageOps.exif_transpose(im)
                    img.load()
        except CifarEdgeError:
            raise
        except Image.DecompressionBombError as e:
            size = re.search(r"\((\d+) pixels\)", str(e))
            raise CifarEdgeError(f"image '{label}' has {int(size.group(1)) if size else 'too many'} pixels, too "
                                 f"large; downscale it below {MAX_PIXELS // 1_000_000} megapixels") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise CifarEdgeError(f"cannot read '{label}' as an image ({type(e).__name__}); "
                                 "pass a PNG or JPEG file") from None
    return _square(to_rgb8(img, label))


def _check_pixels(width: int, height: int, label: str):
    if width * height > MAX_PIXELS:
        raise CifarEdgeError(f"image '{label}' is {width}x{height} pixels, too large; "
                             f"downscale it below {MAX_PIXELS // 1_000_000} megapixels")


_NO_RGB = ("LAB",)        # Pillow "converts" these by relabelling the channels: wrong colours
_WIDE_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")      # 16/32-bit integer and float gray


def to_rgb8(img: Image.Image, label: str) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB with the same look.

    Pillow's own ``convert("RGB")`` clips 16-bit gray at 255 (a 16-bit PNG turns white), so wide
    gray is rescaled from its range: 16-bit by 1/257, float in 0..1 by 255.  Transparent pixels
    become white (not black)."""
    if img.mode in _WIDE_GRAY:
        arr = np.asarray(img, np.float64)
        top = float(np.nanmax(arr)) if arr.size else 0.0
        if img.mode == "F" and top <= 1.0:
            arr = arr * 255.0
        elif img.mode.startswith("I;16") or top > 255:
            arr = arr / 257.0 if top <= 65535 else arr * (255.0 / top)
        img = Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), "L")
    try:
        if img.mode in _NO_RGB:
            raise ValueError(img.mode)
        if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
            img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
        return img.convert("RGB")
    except ValueError:
        raise CifarEdgeError(f"'{label}' uses the image mode {img.mode}, which has no RGB conversion; "
                             "save it as an 8-bit RGB or grayscale PNG or JPEG") from None


def _square(img: Image.Image) -> Image.Image:
    x, y, side = center_square(*img.size)
    return img.crop((x, y, x + side, y + side))


def center_square(width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) of the centred square crop; the Android app's contract does the same."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def read_image(item, size: int, label: str | None = None) -> np.ndarray:
    """One image as size x size x 3 uint8 RGB."""
    return np.asarray(open_rgb(item, label).resize((size, size), Image.Resampling.BILINEAR), np.uint8)
