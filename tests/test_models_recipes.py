"""What `train --model M` resolves to, pinned: the resolved TrainConfig of the default model,
of cnn-tiny and of mobilenetv2 (with and without a short run's smaller batch, and after a
switch of optimizer), as written by the code before recipes moved into the family files
(tests/data/resolved_configs.json).  A refactor of where defaults live must leave these equal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_edge.train import TrainConfig

PINNED = json.loads((Path(__file__).parent / "data" / "resolved_configs.json").read_text())


@pytest.mark.parametrize("case", sorted(PINNED))
def test_resolved_config_is_unchanged(case):
    model, rest = case.split(" ", 1)
    cfg = TrainConfig(model=model, optimizer="adamw") if rest == "adamw" else TrainConfig(model=model)
    n_train = int(rest) if rest.isdigit() else None
    assert cfg.resolved(n_train=n_train).to_dict() == PINNED[case]


def test_the_default_command_trains_the_pinned_default():
    assert TrainConfig().resolved().to_dict() == PINNED["cnn None"]


def test_a_config_from_before_airbench_still_means_the_residual_cnn():
    old = TrainConfig.from_dict({"model": "cnn", "model_options": {"depth": [1, 1, 1]}})
    assert old.model_options == {"layout": "residual", "depth": (1, 1, 1)}
    assert TrainConfig.from_dict({"model": "cnn", "lookahead": True}).model_options == {}


def test_the_train_command_defaults_are_the_configs_own():
    """The CLI spells out plain defaults in its signature (its --help shows them, and it must not
    load TensorFlow to read them); each must equal the TrainConfig / AugmentConfig field it fills,
    so the config stays their one source.  Recipe settings default to None there: the recipe fills them."""
    import dataclasses

    import typer

    from cifar_edge.cli import app
    from cifar_edge.data import AugmentConfig

    (train,) = [c for c in typer.main.get_command(app).commands.values() if c.name == "train"]
    fields = {f.name: f for cls in (TrainConfig, AugmentConfig) for f in dataclasses.fields(cls)}
    checked = 0
    for param in train.params:
        field = fields.get(param.name)
        if field is None or field.default is dataclasses.MISSING:
            continue
        default = param.default
        if field.default is None or field.name == "model":
            assert default is None or field.name == "model", (param.name, default)   # the recipe (or registry) decides
        else:
            assert default == field.default, (param.name, default, field.default)
        checked += 1
    assert checked >= 25, checked
