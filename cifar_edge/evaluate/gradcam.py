"""Grad-CAM heatmaps: which pixels the model looked at for a class.

Works on any functional Keras model with a spatial feature map before its classifier head,
so it needs no per-architecture code.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from .._tf import keras, tf  # noqa: E402
from ..data.pipeline import Normalization  # noqa: E402
from ..errors import CifarEdgeError  # noqa: E402
from ..fileio import atomic_path  # noqa: E402
from ..images import open_rgb  # noqa: E402
from .metrics import model_image_size, to_probabilities  # noqa: E402

_GRADCAM_BATCH = 64


def _output_rank(layer):
    try:
        out = layer.output
    except (AttributeError, ValueError):   # shared layers have several outputs
        return None, None
    if isinstance(out, (list, tuple)):
        return None, None
    return len(out.shape), tuple(out.shape)


def find_gradcam_layer(model) -> str:
    """Name of the last layer with a spatial (N, H, W, C) output: the deepest feature map,
    i.e. the one just before global pooling.  1x1 maps (squeeze-excite gates) are skipped,
    since they carry no 'where'."""
    fallback = None
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        rank, shape = _output_rank(layer)
        if rank != 4:
            continue
        if (shape[1] or 2) > 1 or (shape[2] or 2) > 1:
            return layer.name
        fallback = fallback or layer.name
    if fallback:
        return fallback
    raise CifarEdgeError(f"model '{model.name}' has no layer with a 4-D (N, H, W, C) output, so Grad-CAM "
                         "cannot be computed; it needs a convolutional model")


def _target_layer(model, layer_name):
    if layer_name is None:
        layer_name = find_gradcam_layer(model)
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        candidates = [lay.name for lay in model.layers if _output_rank(lay)[0] == 4
                      and not isinstance(lay, keras.layers.InputLayer)]
        raise CifarEdgeError(f"model has no layer '{layer_name}'; spatial layers are: "
                             f"{', '.join(candidates[-8:]) or 'none'}") from None
    if _output_rank(layer)[0] != 4:
        raise CifarEdgeError(f"layer '{layer_name}' does not output a (N, H, W, C) feature map; "
                             "pick a convolutional layer (or omit layer_name)")
    return layer


def gradcam(model, images_float_normalized, class_index=None, layer_name=None) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in 0..1 at the input resolution.

    ``images_float_normalized`` are model-ready inputs (as ``prepare_images`` returns), one
    image (H, W, 3) or a batch.  ``class_index`` is None (each image's predicted class), an
    int for all images, or one index per image.
    """
    x = np.asarray(images_float_normalized, np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise CifarEdgeError(f"expected images shaped (N, H, W, C); got {x.shape}")
    expected = tuple(model.input_shape[1:])
    if any(e is not None and e != a for e, a in zip(expected, x.shape[1:])):
        raise CifarEdgeError(f"model expects images of shape {expected}, got {x.shape[1:]}; "
                             "resize with prepare_images(..., image_size=...) first")
    layer = _target_layer(model, layer_name)
    sub = keras.Model(model.inputs, [layer.output, model.output])
    n = len(x)
    if class_index is None:
        targets = None
    else:
        targets = np.broadcast_to(np.asarray(class_index, np.int64).reshape(-1), (n,))
        c = int(model.output_shape[-1])
        if targets.size and (targets.min() < 0 or targets.max() >= c):
            raise CifarEdgeError(f"class_index must be in 0..{c - 1}; got {class_index}")

    maps = []
    for start in range(0, n, _GRADCAM_BATCH):
        xb = tf.constant(x[start:start + _GRADCAM_BATCH])
        with tf.GradientTape() as tape:
            features, out = sub(xb, training=False)
            idx = (tf.argmax(out, axis=-1, output_type=tf.int32) if targets is None
                   else tf.constant(targets[start:start + _GRADCAM_BATCH], tf.int32))
            score = tf.gather(out, idx, axis=1, batch_dims=1)
        grads = tape.gradient(score, features)
        if grads is None:
            raise CifarEdgeError(f"layer '{layer.name}' does not influence the model output; pick another layer")
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)        # channel importance
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))      # (b, h, w)
        cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        maps.append(np.clip(cam.numpy(), 0.0, 1.0).astype(np.float32))
    return np.concatenate(maps, axis=0) if maps else np.zeros((0, *x.shape[1:3]), np.float32)


def explain_images(model, image_paths_or_arrays, norm: Normalization, image_size, class_names, out_dir,
                   display_size: int = 256) -> list[dict]:
    """Classify arbitrary images and write one Grad-CAM figure per image.

    Each PNG shows the (centre-cropped) image and the heatmap overlaid on it, titled with
    the top-1 class and confidence.  Returns ``[{image, path, top1, confidence}]``.
    """
    items = image_paths_or_arrays
    if isinstance(items, (str, Path, Image.Image)) or (isinstance(items, np.ndarray) and items.ndim <= 3):
        items = [items]   # one image given on its own
    items = list(items)
    size = image_size or model_image_size(model)
    if size is None:
        raise CifarEdgeError("the model accepts any input size; pass image_size (e.g. 32)")
    if int(model.output_shape[-1]) != len(class_names):
        raise CifarEdgeError(f"the model has {model.output_shape[-1]} outputs but {len(class_names)} class "
                             "names were given; use the class names the model was trained with")
    out_dir = Path(out_dir)

    # Load everything first so a bad file fails before any work or output.
    labels, crops = [], []
    for i, item in enumerate(items):
        label = str(item) if isinstance(item, (str, Path)) else f"array[{i}]"
        labels.append(label)
        crops.append(open_rgb(item, label))
    if not crops:
        return []
    batch = np.stack([np.asarray(c.resize((size, size), Image.Resampling.BILINEAR)) for c in crops])
    x = norm.apply_numpy(batch)
    outputs = [np.asarray(model(tf.constant(x[s:s + 256]), training=False)) for s in range(0, len(x), 256)]
    probs = to_probabilities(np.concatenate(outputs))
    heat = gradcam(model, x)

    results = []
    for i, (label, crop) in enumerate(zip(labels, crops)):
        top = int(probs[i].argmax())
        conf = float(probs[i, top])
        shown = crop if crop.size[0] <= display_size else crop.resize((display_size, display_size),
                                                                       Image.Resampling.LANCZOS)
        side = shown.size[0]
        hm = np.asarray(Image.fromarray((heat[i] * 255).astype(np.uint8)).resize((side, side),
                                                                                 Image.Resampling.BILINEAR))
        stem = Path(label).stem if isinstance(items[i], (str, Path)) else "array"
        path = out_dir / f"{i:03d}_{stem}_gradcam.png"
        fig = Figure(figsize=(6, 3.3))
        fig.suptitle(f"{class_names[top]} ({conf:.1%})", fontsize=11)
        for k, overlay in enumerate((False, True)):
            ax = fig.add_subplot(1, 2, k + 1)
            ax.imshow(np.asarray(shown), interpolation="nearest" if side < 64 else "antialiased")
            if overlay:
                ax.imshow(hm / 255.0, cmap="jet", alpha=0.45, vmin=0, vmax=1,
                          interpolation="nearest" if side < 64 else "antialiased")
            ax.set_title("Grad-CAM" if overlay else "input", fontsize=9)
            ax.axis("off")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
        results.append({"image": label, "path": str(path), "top1": str(class_names[top]), "confidence": conf})
    return results
