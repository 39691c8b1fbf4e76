"""Loading tells an unreadable file from one that needs an unregistered class; optimize of a
two-stage run is one stage; a compressed model far below its parent is refused."""
from __future__ import annotations

import json
import zipfile

import pytest

from cifar_edge.compress import OptimizeConfig, optimize_run
from cifar_edge.compress.run import _finetune_config
from cifar_edge.errors import CifarEdgeError
from cifar_edge.runs import load_model
from conftest import train_tiny


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("guards") / "run", epochs=3, limit=1500)


def test_a_class_nobody_registered_is_not_called_corrupt(run, tmp_path):
    source = run / "model.keras"
    target = tmp_path / "foreign.keras"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][1]["class_name"] = "MyVendorLayer"
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    with pytest.raises(CifarEdgeError, match="needs the layer class.*MyVendorLayer.*file is intact") as info:
        load_model(target)
    assert "corrupt" not in str(info.value)


def test_a_truncated_file_is_called_corrupt(run, tmp_path):
    target = tmp_path / "cut.keras"
    target.write_bytes((run / "model.keras").read_bytes()[:5000])
    with pytest.raises(CifarEdgeError, match="corrupt or truncated"):
        load_model(target)


def test_optimize_of_a_two_stage_run_is_one_stage():
    parent = {"train": {"model": "mobilenetv2", "epochs": 6, "head_epochs": 2, "head_lr": 0.01, "unfreeze": "4",
                        "lr": 5e-4, "batch_size": 64, "optimizer": "adamw", "schedule": "cosine"}}
    ft = _finetune_config(parent, OptimizeConfig(method="qat", epochs=2))
    assert (ft.epochs, ft.head_epochs, ft.head_lr, ft.unfreeze) == (2, 0, None, "all")
    assert ft.lr == pytest.approx(5e-5)


def test_a_compressed_model_far_below_its_parent_fails_naming_the_parent_and_keeps_nothing(run, tmp_path):
    parent_top1 = json.loads((run / "metrics.json").read_text())["top1"]
    child = tmp_path / "c2"
    with pytest.raises(CifarEdgeError, match=rf"points below its parent's {parent_top1:.2%}.*nothing was kept"):
        optimize_run(run, child, OptimizeConfig(method="cluster", clusters=2, epochs=1, lr=1e-6, limit=300,
                                                max_drop=5))
    assert not child.exists()
