"""Reading user images (predict, explain, serve): any file, mode or size, to the square RGB
pixels a CIFAR model expects.  One place, so every command sees the same pixels."""
from __future__ import annotations

import io
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
    else:
        if isinstance(item, (bytes, bytearray)):
            source = io.BytesIO(item)
        else:
            source = Path(item)
            if not source.is_file():
                raise CifarEdgeError(f"image '{source}' not found; pass the path of a PNG or JPEG file")
        try:
            with Image.open(source) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise CifarEdgeError(f"image '{label}' is {im.width}x{im.height} pixels, too large; "
                                         "downscale it below 64 megapixels")
                im.draft("RGB", (1024, 1024))          # fast JPEG downscale of huge photos
                img = ImageOps.exif_transpose(im)
                img.load()
        except CifarEdgeError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise CifarEdgeError(f"cannot read '{label}' as an image ({type(e).__name__}); "
                                 "pass a PNG or JPEG file") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img.convert("RGBA"))
    img = img.convert("RGB")
    x, y, side = center_square(*img.size)
    return img.crop((x, y, x + side, y + side))


def center_square(width: int, height: int) -> tuple[int, int, int]:
    """(x, y, side) of the centred square crop; the Android app's contract does the same."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def read_image(item, size: int, label: str | None = None) -> np.ndarray:
    """One image as size x size x 3 uint8 RGB."""
    return np.asarray(open_rgb(item, label).resize((size, size), Image.Resampling.BILINEAR), np.uint8)
