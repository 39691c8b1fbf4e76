"""airbench94's recipe in tf_keras (issue 14): each piece does what airbench's torch code
does, and the default cnn learns on a short run over little real data."""
from __future__ import annotations

import numpy as np
import pytest

from cifar_edge._tf import keras, tf
from cifar_edge.data.augment import AugmentConfig
from cifar_edge.data.pipeline import Normalization, make_dataset
from cifar_edge.errors import CifarEdgeError
from cifar_edge.train.optim import ScaledSGD
from cifar_edge.train.schedules import Triangle


def _torch_sgd(p, grads, lr, momentum, l2, multiplier=1.0, frozen_from=None):
    """torch.optim.SGD(nesterov=True) with weight_decay on a summed-up gradient, as airbench runs it."""
    p, buf = np.array(p, np.float64), None
    for t, g in enumerate(grads):
        if frozen_from is not None and t >= frozen_from:
            continue
        d = multiplier * g + l2 * p
        buf = d if buf is None else momentum * buf + d
        p = p - lr * (d + momentum * buf)
    return p


GRADS = [np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.3, -0.2]), np.array([-1.0, 0.0, 0.7]),
         np.array([0.2, 0.2, 0.2]), np.array([0.9, -0.4, 0.0])]


def _apply(opt, variables, grads_per_var):
    for step in range(len(GRADS)):
        opt.apply_gradients([(tf.constant(g[step], tf.float32), v) for g, v in zip(grads_per_var, variables)])


@pytest.mark.parametrize("name, multiplier", [("w", 1.0), ("s1_bn/beta", 64.0), ("logits/kernel", 1 / 81)])
def test_sgd_l2_is_torch_sgd_with_l2_through_nesterov_momentum(name, multiplier):
    p0 = np.array([1.0, -2.0, 0.5])
    var = tf.Variable(p0, dtype=tf.float32, name=name)
    opt = ScaledSGD(0.01, momentum=0.85, l2=0.05, multipliers={"/beta": 64.0, "logits/kernel": 1 / 81})
    _apply(opt, [var], [GRADS])
    # keras' Nesterov form equals torch's at a constant lr (buf = -m / lr)
    np.testing.assert_allclose(var.numpy(), _torch_sgd(p0, GRADS, 0.01, 0.85, 0.05, multiplier), rtol=1e-5)


def test_sgd_l2_freezes_a_variable_from_its_step_momentum_included():
    p0 = np.array([1.0, -2.0, 0.5])
    stem = tf.Variable(p0, dtype=tf.float32, name="stem_conv/bias")
    other = tf.Variable(p0, dtype=tf.float32, name="x")
    opt = ScaledSGD(0.01, momentum=0.85, l2=0.05, freeze_from={"stem_conv/bias": 2})
    _apply(opt, [stem, other], [GRADS, GRADS])
    np.testing.assert_allclose(stem.numpy(), _torch_sgd(p0, GRADS, 0.01, 0.85, 0.05, frozen_from=2), rtol=1e-5)
    assert not np.allclose(stem.numpy(), other.numpy())       # the other variable went on training


def test_lookahead_blends_every_5_steps_and_ends_on_the_slow_copy():
    p0 = np.array([1.0, -2.0, 0.5])
    total = 6
    fast = tf.Variable(p0, dtype=tf.float32, name="w")
    plain = tf.Variable(p0, dtype=tf.float32, name="w")
    with_lookahead = ScaledSGD(0.01, momentum=0.85, lookahead_total_steps=total)
    _apply(with_lookahead, [fast], [GRADS])
    _apply(ScaledSGD(0.01, momentum=0.85), [plain], [GRADS])          # same gradients, no lookahead
    decay = 0.95 ** 5 * (5 / total) ** 3
    expected = decay * p0 + (1 - decay) * plain.numpy()               # step 5: blend, and the weights take it
    np.testing.assert_allclose(fast.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(with_lookahead.slow[0].numpy(), expected, rtol=1e-5)
    with_lookahead.apply_gradients([(tf.constant(GRADS[0], tf.float32), fast)])   # step 6 = T: the slow copy
    np.testing.assert_allclose(fast.numpy(), expected, rtol=1e-6)


def test_lookahead_includes_batchnorm_statistics():
    """The moving mean after step 5 is the blend of its start and its raw step-5 value (a twin
    run without the statistics tracked gives that raw value: the same weights, since the
    weights are blended in both)."""
    def run(track: bool):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        x = keras.layers.BatchNormalization(momentum=0.5, name="bn")(keras.layers.Dense(3, name="d")(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
        opt = ScaledSGD(0.1, lookahead_total_steps=6)
        if track:
            opt.track_statistics(model)
        model.compile(opt, loss="mse")
        start = model.get_layer("bn").moving_mean.numpy().copy()
        xs = np.random.default_rng(0).random((16, 4), np.float32)
        ys = np.random.default_rng(1).random((16, 2), np.float32)
        model.fit(xs, ys, batch_size=16, epochs=5, verbose=0, shuffle=False)
        return start, model.get_layer("bn").moving_mean.numpy(), opt
    start, blended, opt = run(track=True)
    _, raw, _ = run(track=False)
    decay = 0.95 ** 5 * (5 / 6) ** 3
    assert not np.allclose(raw, start)
    np.testing.assert_allclose(blended, decay * start + (1 - decay) * raw, rtol=1e-5, atol=1e-7)
    slow = {v.name.split(":")[0].split("/")[-1]: v for v in opt.slow}
    np.testing.assert_allclose(slow["moving_mean"].numpy(), blended)
    assert "moving_variance" in slow


def test_logit_scale_as_init_and_gradient_scale_trains_exactly_like_scaled_logits():
    from cifar_edge.train.whitening import scale_logits
    keras.utils.set_random_seed(1)
    s = 1 / 9
    xs = np.random.rand(32, 5).astype("float32")
    ys = keras.utils.to_categorical(np.random.randint(0, 3, 32), 3)

    def head():
        inputs = keras.Input((5,))
        return inputs, keras.layers.Dense(3, use_bias=False, name="logits")(inputs)
    i1, o1 = head()
    scaled = keras.Model(i1, keras.layers.Rescaling(s)(o1))                # airbench: logits x 1/9
    i2, o2 = head()
    plain = keras.Model(i2, o2)
    plain.set_weights(scaled.get_weights())
    assert scale_logits(plain, s)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)
    scaled.compile(ScaledSGD(0.5, momentum=0.85, l2=0.01), loss=loss)
    plain.compile(ScaledSGD(0.5, momentum=0.85, l2=0.01, multipliers={"logits/kernel": s * s}), loss=loss)
    for model in (scaled, plain):
        model.fit(xs, ys, batch_size=8, epochs=3, verbose=0, shuffle=False)
    np.testing.assert_allclose(plain.predict(xs, verbose=0), scaled.predict(xs, verbose=0), rtol=1e-4, atol=1e-5)


def test_triangle_schedule():
    sched = Triangle(2.0, total_steps=100, peak_step=23)
    lr = [float(sched(t)) for t in (0, 23, 100, 150)]
    assert lr == pytest.approx([0.4, 2.0, 0.14, 0.14])
    assert float(sched(10)) == pytest.approx(2.0 * (0.2 + 0.8 * 10 / 23))


def test_alternating_flip_mirrors_each_image_every_other_epoch_with_a_new_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(16) % 4
    identity = Normalization()

    def epochs(alternate):
        ds = make_dataset(images, labels, 4, 16, identity, training=True, augment=AugmentConfig(translate=0),
                          seed=3, epochs=range(4), alternate_flip=alternate)
        seen = []
        for batch, _ in ds:
            batch = batch.numpy().astype(np.uint8)
            order = [next(i for i in range(16) if (images[i] == b).all() or (images[i] == b[:, ::-1]).all())
                     for b in batch]
            seen.append((order, {i: bool((images[i] != b).any()) for i, b in zip(order, batch)}))
        return seen
    seen = epochs(True)
    flipped = [s[1] for s in seen]
    assert 3 <= sum(flipped[0].values()) <= 13
    for i in range(16):
        assert flipped[0][i] != flipped[1][i] and flipped[0][i] == flipped[2][i] != flipped[3][i]
    assert seen[0][0] != seen[1][0]                                      # reshuffled every epoch
    randomly = [s[1] for s in epochs(False)]
    assert any(randomly[0][i] == randomly[1][i] for i in range(16))      # chance, not alternation


def test_airbench_network():
    from cifar_edge.models import get_model_spec
    model = get_model_spec("cnn").build(10)
    names = [layer.name for layer in model.layers]
    assert "stem_bn" not in names and model.get_layer("stem_conv").use_bias
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 and all(n.momentum == 0.6 and not n.scale for n in norms)
    for conv, cin in (("s1a_conv", 24), ("s2a_conv", 64)):
        kernel = model.get_layer(conv).get_weights()[0]
        dirac = np.zeros(kernel[:, :, :, :cin].shape)
        dirac[1, 1, np.arange(cin), np.arange(cin)] = 1
        np.testing.assert_array_equal(kernel[:, :, :, :cin], dirac)
        assert np.abs(kernel[:, :, :, cin:]).max() <= 1 / np.sqrt(9 * cin) + 1e-6 and kernel[:, :, :, cin:].std() > 0
    square = model.get_layer("s2b_conv").get_weights()[0]                 # 256 -> 256: every filter the identity
    assert square[1, 1].trace() == 256 and np.abs(square).sum() == 256
    assert isinstance(model.get_layer("head_pool"), keras.layers.GlobalMaxPooling2D)
    assert not model.get_layer("logits").use_bias
    with pytest.raises(CifarEdgeError, match="layout"):
        get_model_spec("cnn").build(10, depth=(2, 1, 1))


def test_recipe_per_sample_lr_and_small_data_batch():
    from cifar_edge.train import TrainConfig
    full = TrainConfig(model="cnn", epochs=10).resolved(n_train=50000)
    assert (full.batch_size, full.optimizer, full.lookahead, full.bn_bias_lr) == (1024, "sgd-l2", True, 64.0)
    small = TrainConfig(model="cnn", epochs=2).resolved(n_train=5000)
    assert small.batch_size == 64 and small.lr == pytest.approx(full.lr * 64 / 1024)
    assert TrainConfig(model="cnn", batch_size=256).resolved().lr == pytest.approx(full.lr / 4)
    assert TrainConfig(model="cnn", batch_size=256, lr=0.3).resolved().lr == 0.3
    adamw = TrainConfig(model="cnn", optimizer="adamw").resolved()
    assert (adamw.lookahead, adamw.bn_bias_lr, adamw.logit_scale, adamw.alternate_flip) == (False, 1.0, 1.0, True)
    assert (adamw.lr, adamw.schedule) == (1e-3, "cosine")        # not sgd-l2's lr 1.5, which diverges AdamW
    old = TrainConfig.from_dict({k: v for k, v in TrainConfig(model="cnn").to_dict().items() if k != "lookahead"})
    assert old.model_options["layout"] == "residual"             # a run saved before cnn became airbench's
    with pytest.raises(CifarEdgeError, match="--bn-bias-lr needs --optimizer sgd-l2"):
        TrainConfig(model="cnn", optimizer="adamw", bn_bias_lr=64.0).resolved()


def test_default_cnn_learns_in_two_epochs_on_2000_real_images(tmp_path, cifar10_real):
    """The default recipe on a user's first small experiment: clearly above chance (10%)."""
    from cifar_edge.train import TrainConfig, train
    xtr, ytr, xte, yte, names = cifar10_real
    data = tmp_path / "small.npz"
    np.savez(data, x_train=xtr[:2000], y_train=ytr[:2000], x_test=xte[:1000], y_test=yte[:1000],
             class_names=np.array(names))
    metrics = train(TrainConfig(data=str(data), epochs=2, val_split=0.0), tmp_path / "run")
    assert metrics["top1"] >= 0.30, metrics["top1"]
    assert metrics["tta_views"] == 6 and metrics["top1_tta"] >= 0.30
