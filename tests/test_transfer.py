"""Transfer models: MobileNetV2, ConvNeXt and ResNet50 built flat, their weight mappings,
two-stage fine-tuning, and ImageNet weights rebuilt from the real int8 TFLite MobileNetV2
(TF1 slim, QAT) in ../shared/weights (those tests skip where that folder is absent)."""
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


def test_mobilenetv2_is_registered_flat_and_tfmot_can_quantize_it():
    import tensorflow_model_optimization as tfmot
    from cifar_edge.models import get_model_spec
    spec = get_model_spec("mobilenetv2")
    model = spec.build(10, 32, alpha=0.35)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 10)
    assert not any(hasattr(layer, "layers") for layer in model.layers)          # flat: no nested model
    assert spec.normalization.mean == (127.5,) * 3 and "imagenet" in spec.available_weights()
    qat = tfmot.quantization.keras.quantize_model(model)
    assert qat.output_shape == (None, 10)


@pytest.mark.parametrize("options, message", [
    (dict(alpha=0.6), "alpha 0.6 does not exist"),
    (dict(weights="/no/such/file.h5"), "no such file"),
])
def test_bad_transfer_options_are_clear_errors(options, message):
    from cifar_edge.models import get_model_spec
    with pytest.raises(CifarEdgeError, match=message):
        get_model_spec("mobilenetv2").build(10, 96, **options)
    with pytest.raises(CifarEdgeError, match="input size 64 is not supported"):
        get_model_spec("mobilenetv2").build(10, 64)


def test_imagenet_weights_offline_name_the_fix(monkeypatch):
    import tf_keras.src.utils.data_utils as data_utils
    from cifar_edge.models import get_model_spec

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")
    monkeypatch.setattr(data_utils, "get_file", offline)
    with pytest.raises(CifarEdgeError, match="weights import-tflite"):
        get_model_spec("mobilenetv2").build(10, 96, weights="imagenet")


def test_import_tflite_cli_writes_weights_that_train_loads(tmp_path):
    _need_weights()
    from typer.testing import CliRunner
    from cifar_edge.cli import app
    from cifar_edge.models import get_model_spec
    from cifar_edge.models.tflite_import import read_tflite_convs
    out = tmp_path / "mnv2.h5"
    r = CliRunner().invoke(app, ["weights", "import-tflite", str(TFLITE), "--out", str(out)])
    assert r.exit_code == 0, r.output
    model = get_model_spec("mobilenetv2").build(10, 32, weights=str(out))            # any input size
    assert np.allclose(model.get_layer("Conv1").get_weights()[0], read_tflite_convs(TFLITE)[0]["kernel"])
    r = CliRunner().invoke(app, ["train", "--model", "mobilenetv2", "--weights", str(out), "--input-size", "32",
                                 "--data", "synthetic", "--epochs", "1", "--limit", "200", "--out", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    with pytest.raises(CifarEdgeError, match="does not fit MobileNetV2 alpha 0.5"):
        get_model_spec("mobilenetv2").build(10, 96, alpha=0.5, weights=str(out))


def _backbone_file(tmp_path, alpha=0.35):
    """A seeded random MobileNetV2 backbone saved as a weights file, so the start is known."""
    from cifar_edge._tf import keras
    keras.utils.set_random_seed(3)
    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, alpha=alpha)
    path = tmp_path / "start.h5"
    base.save_weights(str(path))
    return path, base


TWO_STAGE = dict(model="mobilenetv2", data="synthetic", limit=300, batch_size=64, input_size=32,
                 synthetic_classes=10, epochs=3, head_epochs=1, lr=1e-3, val_split=0.0)   # last weights, no best


@pytest.mark.parametrize("unfreeze", ["0", "1"])
def test_two_stage_fine_tuning_trains_the_head_then_the_top_blocks_with_bn_frozen(tmp_path, unfreeze):
    import csv
    from cifar_edge.train import TrainConfig, train
    from cifar_edge.runs import load_model
    start, base = _backbone_file(tmp_path)
    run = tmp_path / "run"
    train(TrainConfig(**TWO_STAGE, unfreeze=unfreeze, model_options={"alpha": 0.35, "weights": str(start)}), run)
    model = load_model(run / "model.keras")
    same = lambda name: all(np.array_equal(a, b) for a, b in zip(model.get_layer(name).get_weights(),  # noqa: E731
                                                                 base.get_layer(name).get_weights()))
    assert same("Conv1") and same("bn_Conv1") and same("block_15_project")    # bottom blocks never trained
    assert same("Conv_1") == (unfreeze == "0")                                  # the top block only when unfrozen
    assert same("Conv_1_bn")                                                     # BatchNorm stays in inference mode
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["stage"]) for r in rows] == [("1", "1"), ("2", "2"), ("3", "2")]
    assert all(layer.trainable for layer in model.layers)                      # saved ready for optimize/QAT


def test_two_stage_run_resumes_in_stage_two_without_redoing_stage_one(tmp_path, monkeypatch):
    import csv
    import cifar_edge.train.loop as loop
    from cifar_edge.train import TrainConfig, train
    start, _ = _backbone_file(tmp_path)
    cfg = TrainConfig(**TWO_STAGE, unfreeze="all", model_options={"alpha": 0.35, "weights": str(start)})
    real_fit = loop._Stage.fit
    stages = []

    def crash_in_stage_two(self, model, cfg, first, last, backup, label=None):
        stages.append(label)
        if label == 2 and len(stages) == 2:
            raise RuntimeError("power cut at the start of stage 2")
        return real_fit(self, model, cfg, first, last, backup, label)
    monkeypatch.setattr(loop._Stage, "fit", crash_in_stage_two)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError):
        train(cfg, run)
    metrics = train(cfg, run, resume=True)
    assert stages == [1, 2, 2]                                   # stage 1 was not run again
    with open(run / "history.csv", newline="") as f:
        assert [r["stage"] for r in csv.DictReader(f)] == ["1", "2", "2"]
    assert metrics["epochs_run"] == 3 and not (run / "backup").exists()


def test_two_stage_needs_a_transfer_model_and_sane_counts(tmp_path):
    from cifar_edge.train import TrainConfig, train
    with pytest.raises(CifarEdgeError, match="needs a pretrained transfer model"):
        train(TrainConfig(model="cnn-tiny", data="synthetic", limit=200, epochs=2, head_epochs=1), tmp_path / "a")
    assert not (tmp_path / "a").exists()                                   # refused before anything is written
    with pytest.raises(CifarEdgeError, match="--head-epochs 3 is invalid"):
        TrainConfig(epochs=3, head_epochs=3).validate()
    with pytest.raises(CifarEdgeError, match="--unfreeze some is invalid"):
        TrainConfig(epochs=3, head_epochs=1, unfreeze="some").validate()


def test_convnext_tiny_reproduces_keras_convnext_from_its_weight_file(tmp_path):
    """Official-format weights (keras' ConvNeXtTiny, every weight randomized so each block
    matters) mapped by name into our flat ConvNeXt give the same outputs."""
    from cifar_edge._tf import keras
    from cifar_edge.models.convnext import IMAGENET_NORM, build_convnext
    rng = np.random.default_rng(0)
    stock = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classifier_activation=None)
    for w in stock.weights:
        w.assign(w.numpy() + rng.normal(0, 0.02, w.shape).astype(np.float32))
    path = tmp_path / "convnext_tiny.h5"
    stock.save_weights(str(path))
    ours = build_convnext(1000, (32, 32, 3), "tiny", weights=str(path), include_imagenet_head=True)
    assert not any(hasattr(layer, "layers") for layer in ours.layers)
    x = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    theirs = stock(x, training=False).numpy()
    mine = ours(IMAGENET_NORM.apply_numpy(x), training=False).numpy()
    assert np.max(np.abs(mine - theirs)) <= 1e-5, np.max(np.abs(mine - theirs))
    assert np.std(theirs) > 1e-3                                   # a real signal, not all-equal logits


def test_convnext_nano_trains_quantizes_and_exports_to_tflite_int8_and_onnx(tmp_path):
    from cifar_edge.compress.quantize import quantize
    from cifar_edge.export import ExportConfig, export_run, resolve_variants
    from cifar_edge.models import get_model_spec
    from cifar_edge.train import TrainConfig, train
    spec = get_model_spec("convnext-nano")
    qat, coverage = quantize(spec.build(10, 32))
    assert coverage == "conv/dense layers" and qat.output_shape == (None, 10)
    run = tmp_path / "run"
    train(TrainConfig(model="convnext-nano", data="synthetic", epochs=2, limit=400, batch_size=64,
                      synthetic_classes=10), run)
    entries = export_run(run, resolve_variants(["tflite-int8", "onnx-float32"]),
                         cfg=ExportConfig(calibration_images=100, check_images=100))
    assert {e["variant"] for e in entries} == {"tflite-int8", "onnx-float32"}   # both passed the parity check
    with pytest.raises(CifarEdgeError, match="no official weights"):
        spec.build(10, 32, weights="imagenet")


def test_resnet50_with_weights_takes_rgb_as_keras_takes_bgr(tmp_path):
    """A ResNet50 weights file loaded by us, fed RGB minus the mean, equals keras' ResNet50
    with the same file fed its own caffe preprocessing (BGR)."""
    from cifar_edge._tf import keras
    from cifar_edge.models import get_model_spec
    rng = np.random.default_rng(1)
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    path = tmp_path / "resnet50_notop.h5"
    stock.save_weights(str(path))
    spec = get_model_spec("resnet50")
    ours = spec.build(10, 32, weights=str(path))
    assert not any(hasattr(layer, "layers") for layer in ours.layers)
    x = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    theirs = stock(keras.applications.resnet50.preprocess_input(x.copy()), training=False).numpy()
    features = keras.Model(ours.input, ours.get_layer("gap").output)
    mine = features(spec.normalization.apply_numpy(x), training=False).numpy()
    assert np.max(np.abs(mine - theirs)) <= 1e-4 * max(1.0, np.abs(theirs).max())
    assert len(spec.blocks(ours)) == 17                         # stem + 16 bottleneck blocks


def test_resnet50_loads_keras_weights_for_rgb_input_and_tfmot_can_quantize_it(tmp_path):
    """A keras ResNet50 no-top weights file (caffe: BGR minus the mean) loaded into ours gives
    the stock model's features on the same photo fed as RGB with the RGB means removed."""
    import tensorflow_model_optimization as tfmot
    from cifar_edge._tf import keras
    from cifar_edge.models import get_model_spec
    keras.utils.set_random_seed(5)
    stock = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.h5"
    stock.save_weights(str(path))
    spec = get_model_spec("resnet50")
    ours = spec.build(10, 32, weights=str(path))
    assert not any(hasattr(layer, "layers") for layer in ours.layers)
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    theirs = stock(keras.applications.resnet50.preprocess_input(x.copy()), training=False).numpy()
    features = keras.Model(ours.input, ours.get_layer("gap").input)
    mine = features(spec.normalization.apply_numpy(x), training=False).numpy()
    assert np.max(np.abs(mine - theirs)) <= 1e-4 * max(1.0, np.abs(theirs).max()), np.max(np.abs(mine - theirs))
    assert tfmot.quantization.keras.quantize_model(ours).output_shape == (None, 10)
    with pytest.raises(CifarEdgeError, match="does not fit ResNet50"):
        get_model_spec("resnet50").build(10, 32, weights=str(_backbone_file(tmp_path)[0]))


@pytest.mark.parametrize("name, options", [("mobilenetv2", {"alpha": 0.35}), ("convnext-nano", {}), ("resnet50", {})])
def test_backbone_blocks_cover_every_layer_once_bottom_to_top(name, options):
    """What `--unfreeze N` counts: every backbone layer in exactly one block, the stem first,
    the layer feeding the head last; the head itself in none."""
    from cifar_edge._tf import keras
    from cifar_edge.models import get_model_spec
    spec = get_model_spec(name)
    model = spec.build(10, 32, **options)
    blocks = spec.blocks(model)
    names = [n for block in blocks for n in block]
    assert len(names) == len(set(names)) and len(blocks) > 3
    backbone = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    head = set(backbone) - set(names)
    assert "logits" in head and len(head) <= 3
    order = {n: i for i, n in enumerate(backbone)}
    assert [min(order[n] for n in block) for block in blocks] == sorted(min(order[n] for n in block) for block in blocks)
    assert max(names, key=order.get) in blocks[-1]


def test_mobilenetv2_batchnorm_statistics_track_a_short_run(tmp_path):
    """keras builds MobileNetV2's BatchNorm with momentum 0.999: after a CIFAR-sized run the
    moving statistics were still near their init, and the model trained from scratch scored
    chance in inference mode (1% on CIFAR-100 against 34% with batch statistics).  After 57
    steps the stem's moving mean and variance must match its input's statistics."""
    from cifar_edge._tf import keras
    from cifar_edge.data.augment import AugmentConfig
    from cifar_edge.data.synthetic import render
    from cifar_edge.models.mobilenet import IMAGENET_PM1
    from cifar_edge.train import TrainConfig, train
    from cifar_edge.runs import load_model
    run = tmp_path / "run"
    train(TrainConfig(model="mobilenetv2", data="synthetic", limit=600, batch_size=32, input_size=32,
                      synthetic_classes=4, epochs=3, lr=2e-3, val_split=0.0,
                      augment=AugmentConfig(flip_h=False, translate=0), model_options={"alpha": 0.35, "weights": "none"}), run)
    model = load_model(run / "model.keras")
    x = IMAGENET_PM1.apply_numpy(render(np.arange(400) % 4, 4, seed=9))
    for name in ("bn_Conv1", "expanded_conv_depthwise_BN"):
        bn = model.get_layer(name)
        seen = keras.Model(model.input, bn.input)(x, training=False).numpy().reshape(-1, bn.input.shape[-1])
        assert np.allclose(bn.moving_mean.numpy(), seen.mean(0), atol=0.25 * seen.std(0).mean()), name
        assert np.allclose(bn.moving_variance.numpy(), seen.var(0), rtol=0.5, atol=1e-3), name


def test_convnext_stochastic_depth_rises_to_the_drop_path_rate():
    from cifar_edge.models import get_model_spec
    from cifar_edge.models.convnext import StochasticDepth
    model = get_model_spec("convnext-nano").build(10, 32, drop_path=0.2)
    rates = [layer.rate for layer in model.layers if isinstance(layer, StochasticDepth)]
    assert len(rates) == 11 and rates == sorted(rates) and abs(rates[-1] - 0.2) < 1e-6    # 12 blocks, the first at 0
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    assert np.allclose(model(x, training=False), model(x, training=False))
    with pytest.raises(CifarEdgeError, match="--drop-path 1.5 is invalid"):
        get_model_spec("convnext-nano").build(10, 32, drop_path=1.5)
