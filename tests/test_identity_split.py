"""The identity split: a dirac conv quantizes as conv(W - I) + input, with the same float function."""
from __future__ import annotations

import numpy as np

from cifar_edge.formats._identity_split import identity_dominates, split_identity
from cifar_edge.models.cnn import build_cnn


def _short_run_like(seed=0, learned=0.02):
    """The default cnn's layout (narrow), its dirac taps kept and small learned weights beside them,
    as after two epochs."""
    model = build_cnn(num_classes=10, base_widths=(8, 16, 32, 32), layout="airbench")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_conv") and layer.name != "stem_conv":
            w = layer.get_weights()
            w[0] = w[0] * 0.945 + rng.normal(0, learned, w[0].shape).astype(np.float32) * (w[0] == 0)
            layer.set_weights(w)
    return model


def test_split_keeps_the_float_function_and_names_the_dirac_convs():
    model = _short_run_like()
    split, names = split_identity(model)
    assert names == ["s1b_conv", "s2b_conv", "s3a_conv", "s3b_conv"]    # cin == cout, identity dominates
    x = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
    ref, got = model(x).numpy(), split(x).numpy()
    assert np.max(np.abs(ref - got)) <= 1e-5 * np.max(np.abs(ref)) + 1e-6
    for name in names:
        w = split.get_layer(name).get_weights()[0]
        # the conv's own range is now its learned weights', not the identity tap's
        assert np.abs(w).max() < 0.2 < np.abs(model.get_layer(name).get_weights()[0]).max()
        assert split.get_layer(f"{name}_identity").__class__.__name__ == "Add"
    assert split.get_layer("s1a_conv").get_weights()[0].max() == model.get_layer("s1a_conv").get_weights()[0].max()


def test_a_conv_whose_learned_weights_outgrew_the_identity_is_left_alone():
    kernel = np.random.default_rng(0).normal(0, 1.0, (3, 3, 16, 16)).astype(np.float32)
    assert not identity_dominates(kernel)
    kernel[1, 1, np.arange(16), np.arange(16)] += 1.0
    assert not identity_dominates(kernel)             # identity +1 beside N(0, 1) weights: range barely moves
    small = np.random.default_rng(0).normal(0, 0.02, (3, 3, 16, 16)).astype(np.float32)
    small[1, 1, np.arange(16), np.arange(16)] = 0.945
    assert identity_dominates(small)
    model = _short_run_like(learned=1.0)
    assert split_identity(model) == (model, [])        # nothing to split: the model itself comes back


def test_a_short_cnn_run_exports_int8_from_the_split_model_and_float_from_the_trained_one(tmp_path):
    """One epoch of the default cnn (narrow): its quantized files carry the split, run wholly on
    XNNPACK and keep Keras's top-1; its float file is converted from the model as trained."""
    from cifar_edge.export import ExportConfig, export_run, resolve_variants
    from cifar_edge.formats import ExportOptions, open_model
    from cifar_edge.train import TrainConfig, train
    run = tmp_path / "run"
    train(TrainConfig(model="cnn", model_options={"base_widths": (24, 32, 64, 64)}, data="synthetic", epochs=1,
                      limit=600, batch_size=64, synthetic_classes=10, seed=0), run)
    cfg = ExportConfig(calibration_images=200, check_images=300, repair=False)
    entries = {}
    for opts in (ExportOptions(), ExportOptions(quantization="int8"), ExportOptions(quantization="dynamic")):
        (entry,) = export_run(run, resolve_variants(fmt="tflite", opts=opts), out_dir=run / "export", cfg=cfg)
        entries[entry["variant"]] = entry
    assert "identity_split" not in entries["tflite-float32"]
    for name in ("tflite-int8", "tflite-dynamic"):
        assert entries[name]["identity_split"]["layers"] == ["s1b_conv", "s2b_conv", "s3a_conv", "s3b_conv"]
        assert entries[name]["parity"]["gate"]["passes"]
        placement = open_model(run / "export" / entries[name]["file"], threads=1).placement
        assert placement["engine"] == "XNNPACK" and placement["delegated"] == placement["nodes"], placement
