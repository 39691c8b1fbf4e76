"""cifar_edge.evaluate: exact metric values on hand-built probabilities, and the files the
report / Grad-CAM write, on a tiny untrained model (seconds of CPU)."""
import csv
import math

import numpy as np
import pytest
from PIL import Image

from cifar_edge.data.pipeline import Normalization, prepare_images
from cifar_edge.errors import CifarEdgeError
from cifar_edge.evaluate import (classification_metrics, evaluate_model, explain_images, find_gradcam_layer,
                                 gradcam, plot_training_curves, predict_logits, predict_probabilities, softmax,
                                 to_probabilities, tta_probabilities, tta_views)
from cifar_edge.evaluate.tta import TTA_VIEWS
from cifar_edge.models.cnn import NARROW_WIDTHS, build_cnn
from cifar_edge._tf import keras

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NORM = Normalization((125.0, 123.0, 114.0), (63.0, 62.0, 67.0))
NAMES3 = ["cat", "dog", "ship"]

# 6 examples, 3 classes.  preds = [0, 1, 1, 0, 2, 2]; labels = [0, 0, 1, 1, 2, 2]
PROBS3 = np.array([[0.7, 0.2, 0.1],
                   [0.2, 0.5, 0.3],
                   [0.1, 0.8, 0.1],
                   [0.6, 0.3, 0.1],
                   [0.1, 0.1, 0.8],
                   [0.3, 0.3, 0.4]], np.float32)
LABELS3 = np.array([0, 0, 1, 1, 2, 2])


@pytest.fixture(scope="module")
def tiny_model():
    """Seeded: an unlucky random init can saturate softmax, and the mirror test needs live logits."""
    keras.utils.set_random_seed(0)
    model = build_cnn(num_classes=3, input_shape=(32, 32, 3), width=0.25, depth=(0, 1, 0),
                      base_widths=NARROW_WIDTHS)
    assert model.count_params() < 50_000
    return model


@pytest.fixture(scope="module")
def tiny_data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, 40)


def assert_png(path):
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as img:
        img.verify()


# --- metrics -------------------------------------------------------------------------

def test_metrics_exact_values():
    m = classification_metrics(PROBS3, LABELS3, NAMES3)
    assert m["n"] == 6
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    expected = {"cat": (0.5, 0.5, 0.5, 2), "dog": (0.5, 0.5, 0.5, 2), "ship": (1.0, 1.0, 1.0, 2)}
    for row in m["per_class"]:
        p, r, f, s = expected[row["name"]]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, s))
    assert m["macro_f1"] == pytest.approx(2 / 3)
    p_true = [0.7, 0.2, 0.8, 0.3, 0.8, 0.4]
    assert m["loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-5)
    assert m["best_classes"][0] == {"name": "ship", "accuracy": 1.0}
    assert m["worst_classes"][0]["accuracy"] == 0.5
    assert len(m["best_classes"]) == len(m["worst_classes"]) == 3   # only 3 classes exist
    assert "superclass_top1" not in m


def test_top5_counts_rank_of_true_class():
    # 10 classes; the true class (0) is ranked 1st, 5th, 6th and 10th -> top1 1/4, top5 2/4.
    rows = []
    for rank in (0, 4, 5, 9):
        scores = np.arange(10, 0, -1, dtype=np.float64)      # class j gets score 10 - j
        order = list(range(1, 10))
        order.insert(rank, 0)                               # put class 0 at position `rank`
        p = np.empty(10)
        p[order] = scores
        rows.append(p / p.sum())
    m = classification_metrics(np.array(rows), [0, 0, 0, 0], [f"c{i}" for i in range(10)])
    assert m["top1"] == pytest.approx(0.25)
    assert m["top5"] == pytest.approx(0.5)
    assert m["top5_k"] == 5


def test_top5_with_fewer_than_five_classes_is_top_c():
    m = classification_metrics(PROBS3, LABELS3, NAMES3)
    assert m["top5_k"] == 3
    assert m["top5"] == 1.0
    two = classification_metrics([[0.9, 0.1], [0.8, 0.2]], [0, 1], ["a", "b"])
    assert (two["top1"], two["top5"]) == (0.5, 1.0)


def test_superclass_accuracy():
    # preds [1, 1, 3, 0]; fine->coarse [0, 0, 1, 1]: 0->1 and 2->3 are right superclass, 3->0 is not.
    probs = np.eye(4)[[1, 1, 3, 0]] * 0.7 + 0.075
    m = classification_metrics(probs, [0, 1, 2, 3], list("abcd"), fine_to_coarse=[0, 0, 1, 1],
                               coarse_names=["pets", "vehicles"])
    assert m["top1"] == pytest.approx(0.25)
    assert m["superclass_top1"] == pytest.approx(0.75)
    assert m["per_superclass"] == [{"name": "pets", "accuracy": 1.0, "support": 2},
                                   {"name": "vehicles", "accuracy": 0.5, "support": 2}]


def test_metrics_reject_user_mistakes():
    with pytest.raises(CifarEdgeError, match="softmax"):
        classification_metrics(np.log(PROBS3) * 3, LABELS3, NAMES3)     # logits, not probabilities
    with pytest.raises(CifarEdgeError, match="class names"):
        classification_metrics(PROBS3, LABELS3, NAMES3[:2])
    with pytest.raises(CifarEdgeError, match="labels"):
        classification_metrics(PROBS3, [0, 1, 2, 3, 0, 1], NAMES3)
    with pytest.raises(CifarEdgeError, match="fine_to_coarse"):
        classification_metrics(PROBS3, LABELS3, NAMES3, fine_to_coarse=[0, 1])


def test_softmax_and_probability_detection():
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(1), 1) and p[0, 0] == pytest.approx(1.0) and np.allclose(p[1], 1 / 3)
    assert np.allclose(to_probabilities(logits), p)
    assert np.array_equal(to_probabilities(PROBS3), PROBS3)     # already probabilities: untouched


def test_predict_logits_batches_and_resizes(tiny_model, tiny_data):
    images, _ = tiny_data
    full = predict_logits(tiny_model, images, NORM, batch_size=256)
    batched = predict_logits(tiny_model, images, NORM, batch_size=7)
    assert full.shape == (40, 3) and full.dtype == np.float32
    np.testing.assert_allclose(full, batched, rtol=1e-4, atol=1e-5)
    assert predict_logits(tiny_model, images[:5, :24, :24], NORM).shape == (5, 3)   # resized to 32


# --- report --------------------------------------------------------------------------

def test_evaluate_model_writes_every_file(tiny_model, tiny_data, tmp_path):
    images, labels = tiny_data
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,accuracy,val_loss,val_accuracy,lr\n"
                       "0,1.2,0.4,1.3,0.35,0.1\n1,1.0,0.5,1.1,0.45,0.05\n")
    out = tmp_path / "eval"
    result = evaluate_model(tiny_model, images, labels, NAMES3, NORM, out, history_csv=history,
                            fine_to_coarse=[0, 0, 1], coarse_names=["animal", "vehicle"], split="val")

    assert result["split"] == "val" and result["n"] == 40
    assert 0 <= result["top1"] <= result["top5"] == 1.0
    assert 0 <= result["superclass_top1"] <= 1
    assert result["plots"] == {"confusion": "confusion.png", "per_class": "per_class.png",
                               "correct_examples": "correct_examples.png", "wrong_examples": "wrong_examples.png",
                               "curves": "curves.png"}
    for name in result["plots"].values():
        assert_png(out / name)
    with open(out / "confusion.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][1:] == NAMES3 and [r[0] for r in rows[1:]] == NAMES3
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.tolist() == result["confusion"] and counts.sum() == 40
    assert not (out / "metrics.json").exists()                       # the caller writes it
    assert sorted(p.name for p in out.iterdir()) == sorted([*result["plots"].values(), "confusion.csv"])


def test_evaluate_model_without_history_skips_curves(tiny_model, tiny_data, tmp_path):
    images, labels = tiny_data
    result = evaluate_model(tiny_model, images[:10], labels[:10], NAMES3, NORM, tmp_path,
                            history_csv=tmp_path / "missing.csv")
    assert "curves" not in result["plots"] and not (tmp_path / "curves.png").exists()


def test_training_curves_any_subset_of_columns(tmp_path):
    history = tmp_path / "h.csv"
    history.write_text("loss,top5\n2.0,0.5\n1.5,0.7\n1.2,\n")
    assert_png(plot_training_curves(history, tmp_path / "c.png"))
    history.write_text("foo,bar\n1,2\n")
    with pytest.raises(CifarEdgeError, match="columns"):
        plot_training_curves(history, tmp_path / "c2.png")


# --- Grad-CAM ------------------------------------------------------------------------

def test_gradcam_heatmaps_shape_and_range(tiny_model, tiny_data):
    images, _ = tiny_data
    x = prepare_images(images[:6], NORM)
    assert len(tiny_model.get_layer(find_gradcam_layer(tiny_model)).output.shape) == 4
    for class_index in (None, 2, [0, 1, 2, 0, 1, 2]):
        heat = gradcam(tiny_model, x, class_index=class_index)
        assert heat.shape == (6, 32, 32) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and not np.isnan(heat).any()
    assert gradcam(tiny_model, x, layer_name="s2_relu").shape == (6, 32, 32)
    with pytest.raises(CifarEdgeError, match="no layer"):
        gradcam(tiny_model, x, layer_name="nope")


def test_explain_images_writes_pngs(tiny_model, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 70, 4), dtype=np.uint8)).save(photo)
    gray = np.full((20, 20), 128, np.uint8)
    results = explain_images(tiny_model, [photo, gray], NORM, 32, NAMES3, tmp_path / "cam")
    assert [r["image"] for r in results] == [str(photo), "array[1]"]
    for r in results:
        assert r["top1"] in NAMES3 and 0 < r["confidence"] <= 1 and not math.isnan(r["confidence"])
        assert_png(tmp_path / "cam" / r["path"].split("/")[-1])


def test_explain_images_rejects_non_image(tiny_model, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not an image")
    with pytest.raises(CifarEdgeError, match=r"notes\.txt.*PNG or JPEG"):
        explain_images(tiny_model, [bogus], NORM, 32, NAMES3, tmp_path / "cam")
    assert not (tmp_path / "cam").exists()


# --- test-time augmentation (airbench94's 6 views) ------------------------------------

def _reflect_crop(images, dy, dx):
    """The image reflect-padded by 1 px and cropped back to its size at offset (dy, dx)."""
    h, w = images.shape[1:3]
    return np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")[:, dy:dy + h, dx:dx + w]


def test_tta_views_are_flip_times_one_pixel_reflect_translations():
    # One 3x3 single-channel image, views written out by hand.  Reflect-padded it reads
    #   5 4 5 6 5 / 2 1 2 3 2 / 5 4 5 6 5 / 8 7 8 9 8 / 5 4 5 6 5
    x = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)[None, :, :, None]
    expected = [(0.25, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
                (0.25, [[3, 2, 1], [6, 5, 4], [9, 8, 7]]),      # mirror: width axis reversed
                (0.125, [[5, 4, 5], [2, 1, 2], [5, 4, 5]]),     # crop at (0, 0): moved down-right
                (0.125, [[5, 4, 5], [2, 1, 2], [5, 4, 5]]),     # ... its mirror (symmetric here)
                (0.125, [[5, 6, 5], [8, 9, 8], [5, 6, 5]]),     # crop at (2, 2): moved up-left
                (0.125, [[5, 6, 5], [8, 9, 8], [5, 6, 5]])]
    views = tta_views(x)
    assert len(views) == TTA_VIEWS == 6
    for (weight, view), (want_weight, want) in zip(views, expected):
        assert weight == want_weight
        assert view.dtype == np.uint8 and view.shape == x.shape and view.flags.c_contiguous
        np.testing.assert_array_equal(view[0, :, :, 0], want)
    assert sum(w for w, _ in views) == 1.0

    # A batch of non-square RGB images: every view of every image, channel by channel.
    batch = np.random.default_rng(1).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    plus, minus = _reflect_crop(batch, 0, 0), _reflect_crop(batch, 2, 2)
    np.testing.assert_array_equal(plus[:, 1:, 1:], batch[:, :-1, :-1])    # really a 1-px shift
    np.testing.assert_array_equal(minus[:, :-1, :-1], batch[:, 1:, 1:])
    want = [batch, batch[:, :, ::-1], plus, plus[:, :, ::-1], minus, minus[:, :, ::-1]]
    for (_, view), w in zip(tta_views(batch), want):
        assert view.shape == batch.shape
        np.testing.assert_array_equal(view, w)
    with pytest.raises(CifarEdgeError, match="shaped"):
        tta_views(batch[0])


def test_tta_probabilities_is_the_weighted_view_average(tiny_model, tiny_data):
    images = tiny_data[0][:16]
    views = [images, images[:, :, ::-1], _reflect_crop(images, 0, 0), _reflect_crop(images, 0, 0)[:, :, ::-1],
             _reflect_crop(images, 2, 2), _reflect_crop(images, 2, 2)[:, :, ::-1]]
    weights = [1 / 4, 1 / 4, 1 / 8, 1 / 8, 1 / 8, 1 / 8]
    logits = [predict_logits(tiny_model, v, NORM).astype(np.float64) for v in views]
    # The model tells every view apart, so a wrong view or weight changes the answer.
    for a in range(6):
        for b in range(a + 1, 6):
            assert not np.allclose(logits[a], logits[b], atol=1e-3), (a, b)
    # Our models emit logits: averaged with airbench's weights, then softmax (as airbench).
    expected = softmax(sum(w * z for w, z in zip(weights, logits)))
    got = tta_probabilities(tiny_model, images, NORM)
    assert got.shape == (16, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)

    # A model that ends in a softmax has its per-view probabilities averaged instead.
    inputs = keras.Input((32, 32, 3))
    with_softmax = keras.Model(inputs, keras.layers.Softmax()(tiny_model(inputs)))
    probs = [predict_probabilities(with_softmax, v, NORM).astype(np.float64) for v in views]
    np.testing.assert_allclose(tta_probabilities(with_softmax, images, NORM),
                               sum(w * p for w, p in zip(weights, probs)), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def invariant_model():
    """Per-pixel layers, then a global average pool: it scores the multiset of pixel values,
    so it cannot tell an image from its mirror or from a 1-px reflect translation of an image
    whose 2-px border is one colour (those moves only trade border pixels for equal ones)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 1, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_tta_changes_nothing_for_a_flip_and_translation_invariant_model(invariant_model, tiny_data, tmp_path):
    images, labels = tiny_data
    framed = images.copy()
    framed[:, :2], framed[:, -2:], framed[:, :, :2], framed[:, :, -2:] = 200, 200, 200, 200
    plain = predict_probabilities(invariant_model, framed, NORM)
    np.testing.assert_allclose(tta_probabilities(invariant_model, framed, NORM), plain, atol=1e-5)
    result = evaluate_model(invariant_model, framed, labels, NAMES3, NORM, tmp_path / "eval", tta=True)
    assert result["top1_tta"] == result["top1"] and result["top5_tta"] == result["top5"]
    assert result["loss_tta"] == pytest.approx(result["loss"], abs=1e-5) and result["tta_views"] == 6
    # The check has teeth: the model does see other pixels (zero padding, or an image whose
    # border is not one colour), and the plain model is no constant.
    zero_padded = np.pad(framed, ((0, 0), (1, 1), (1, 1), (0, 0)))[:, :32, :32]
    assert not np.allclose(predict_probabilities(invariant_model, zero_padded, NORM), plain, atol=1e-4)
    assert not np.allclose(tta_probabilities(invariant_model, images, NORM),
                           predict_probabilities(invariant_model, images, NORM), atol=1e-5)
    assert np.ptp(plain, axis=0).max() > 1e-3


def test_evaluate_model_tta_scores_the_six_view_average(tiny_model, tiny_data, tmp_path):
    images, labels = tiny_data
    plain = predict_probabilities(tiny_model, images, NORM)
    tta = tta_probabilities(tiny_model, images, NORM)
    result = evaluate_model(tiny_model, images, labels, NAMES3, NORM, tmp_path / "eval", tta=True)
    assert result["top1"] == pytest.approx(np.mean(plain.argmax(1) == labels))   # headline stays plain
    assert result["top1_tta"] == pytest.approx(np.mean(tta.argmax(1) == labels))
    assert result["loss_tta"] == pytest.approx(-np.mean(np.log(tta[np.arange(len(labels)), labels])), rel=1e-5)
    assert result["loss_tta"] != pytest.approx(result["loss"], abs=1e-4)
    assert result["tta_views"] == 6
    off = evaluate_model(tiny_model, images, labels, NAMES3, NORM, tmp_path / "off")
    assert "top1_tta" not in off and "tta_views" not in off
