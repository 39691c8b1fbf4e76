"""Transfer learning groundwork (issue "Transfer learning", not finished): MobileNetV2 built
flat, and ImageNet weights rebuilt from the real int8 TFLite MobileNetV2 (TF1 slim, QAT) in
../shared/weights (skipped where that folder is absent)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifar_edge.errors import CifarEdgeError
from conftest import SHARED

WEIGHTS = SHARED.parent / "weights" / "mobilenet_v2_1.0_224_imagenet_tflite_quant"
TFLITE = WEIGHTS / "mobilenet_v2_1.0_224_quant.tflite"


def _need_weights():
    if not TFLITE.is_file():
        pytest.skip(f"the real MobileNetV2 .tflite is not available at {TFLITE} (only on the project's machines)")


def _tflite_top1(images_uint8):
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(TFLITE), num_threads=2)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    result = []
    for img in images_uint8:
        interp.set_tensor(inp["index"], img[None])
        interp.invoke()
        result.append(int(np.argmax(interp.get_tensor(out["index"])[0])))
    return np.array(result)


@pytest.fixture(scope="module")
def imported():
    _need_weights()
    from cifar_edge.models.mobilenet import build_mobilenet_v2
    from cifar_edge.models.tflite_import import import_mobilenet_v2
    model = build_mobilenet_v2(1001, (224, 224, 3), dropout=0)
    import_mobilenet_v2(model, TFLITE, include_head=True)
    return model


def _keras_top1(model, images_uint8, batch=50):
    x = (images_uint8.astype(np.float32) - 127.5) / 127.5
    return np.concatenate([np.argmax(model(x[i:i + batch], training=False), 1) for i in range(0, len(x), batch)])


def test_imported_weights_give_the_tflite_models_answers_on_its_sample_photos(imported):
    photos = np.stack([np.asarray(Image.open(WEIGHTS / n).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
                       for n in ("parrot.jpg", "cat.bmp")])
    labels = (WEIGHTS / "imagenet_labels.txt").read_text().splitlines()
    tflite = _tflite_top1(photos)
    assert [labels[i] for i in tflite] == ["macaw", "Egyptian cat"]
    assert list(_keras_top1(imported, photos)) == list(tflite)


def test_imported_backbone_tracks_the_tflite_models_features_on_real_cifar(imported, cifar100_real):
    """The pooled 1280-d features of the Keras model (float, imported weights) against the
    int8 model's own pooled features on real CIFAR images upsampled to 224.  A wrong mapping
    (a transposed kernel, a missing bias) drops the cosine far below; int8 activations keep it
    under 1.  (Top-1 agreement over 1001 classes on these blurry images is 80%: see the issue.)"""
    from ai_edge_litert.interpreter import Interpreter
    from cifar_edge._tf import keras
    x = cifar100_real[0][:100]
    up = np.stack([np.asarray(Image.fromarray(img).resize((224, 224), Image.Resampling.BILINEAR)) for img in x])
    interp = Interpreter(model_path=str(TFLITE), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    pool = next(o for o in interp._get_ops_details() if o["op_name"] in ("AVERAGE_POOL_2D", "MEAN"))
    detail = next(d for d in interp.get_tensor_details() if d["index"] == pool["outputs"][0])
    scale, zero = detail["quantization"]
    theirs = []
    for img in up:
        interp.set_tensor(interp.get_input_details()[0]["index"], img[None])
        interp.invoke()
        theirs.append((interp.get_tensor(detail["index"]).reshape(-1).astype(np.float32) - zero) * scale)
    theirs = np.stack(theirs)
    ours = keras.Model(imported.input, imported.get_layer("gap").output).predict((up - 127.5) / 127.5, verbose=0)
    cos = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.mean() >= 0.98 and cos.min() >= 0.9, (cos.mean(), cos.min())


def test_import_refuses_another_architecture(tmp_path):
    _need_weights()
    from cifar_edge.models.mobilenet import build_mobilenet_v2
    from cifar_edge.models.tflite_import import import_mobilenet_v2
    with pytest.raises(CifarEdgeError, match="alpha 1.0"):
        import_mobilenet_v2(build_mobilenet_v2(10, (96, 96, 3), alpha=0.5), TFLITE)
    with pytest.raises(CifarEdgeError, match="not found"):
        import_mobilenet_v2(build_mobilenet_v2(10, (96, 96, 3)), tmp_path / "missing.tflite")
