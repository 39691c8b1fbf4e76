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
