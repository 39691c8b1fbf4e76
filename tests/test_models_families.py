"""A model family is one file: it registers its builders, its recipe and its options, and no
other library module names it; a new family dropped beside the others is listed by
`cifar-edge models` and trained by `cifar-edge train --model it --its-option`, with no other
file touched."""
from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifar_edge.errors import CifarEdgeError
from cifar_edge.models import flat_recipe, list_models

PACKAGE = Path(__file__).resolve().parents[1] / "cifar_edge"


def _names_in(path: Path):
    """(line, text) of every identifier and string literal (docstrings included) of a module:
    what code says, leaving out its comments."""
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        if tok.type in (tokenize.NAME, tokenize.STRING) or tok.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            yield tok.start[0], tok.string


def test_no_library_module_outside_a_family_names_it():
    found = []
    for spec in list_models():
        own = PACKAGE / "models" / f"{spec.module}.py"
        pattern = re.compile(rf"(?<![\w-]){re.escape(spec.name)}(?![\w-])|^{re.escape(spec.name.replace('-', '_'))}$")
        for path in sorted(PACKAGE.rglob("*.py")):
            if path == own:
                continue
            found += [f"{path.relative_to(PACKAGE.parent)}:{line} names {spec.name}: {text[:60]}"
                      for line, text in _names_in(path) if pattern.search(text)]
    assert not found, "\n".join(found)


def test_the_scan_sees_a_name_in_code():
    """The scan above is not blind: the family's own file does name its models."""
    spec = next(s for s in list_models() if s.default)
    own = PACKAGE / "models" / f"{spec.module}.py"
    assert any(f'"{spec.name}"' == text for _, text in _names_in(own))


def test_a_recipe_setting_out_of_its_group_is_refused():
    assert flat_recipe({"optimizer": {"lr": 0.1}, "evaluation": {"tta": True}}) == {"lr": 0.1, "tta": True}
    with pytest.raises(ValueError, match="'tta' does not belong in 'optimizer'; it goes in 'evaluation'"):
        flat_recipe({"optimizer": {"tta": True}})
    with pytest.raises(ValueError, match="recipe group 'opt' is unknown"):
        flat_recipe({"opt": {"lr": 0.1}})


def test_a_family_option_given_to_another_family_is_one_line_naming_both(tmp_path):
    from cifar_edge.cli import app
    result = CliRunner().invoke(app, ["train", "--model", "cnn-tiny", "--alpha", "0.5", "--data", "synthetic",
                                      "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --alpha is an option of mobilenetv2, not of cnn-tiny (the cnn family, which takes --width, --depth, "
        "--widths, --se, --dropout, --head, --layout, --act, --dirac); drop it or pick one of those models"]
    with pytest.raises(CifarEdgeError, match="--drop-path is an option of convnext-base"):
        from cifar_edge.train import TrainConfig
        TrainConfig(model="resnet50", model_options={"drop_path": 0.1}).resolved()


def test_resume_compares_family_flags_under_their_own_names():
    """`train --resume --widths ...` names --widths (the builder's base_widths) when it differs."""
    from cifar_edge.cli import _train_flags, app
    assert CliRunner().invoke(app, ["train", "--help"]).exit_code == 0     # parsing train declares the flags
    assert _train_flags({"base_widths", "alpha", "lr", "flip_h"}) == {
        "--widths": "model_options.base_widths", "--alpha": "model_options.alpha", "--lr": "lr",
        "--flip-h": "augment.flip_h"}


FAMILY = '''
"""A family of one tiny model, dropped in beside the others."""
from cifar_edge._tf import keras
from cifar_edge.data.pipeline import Normalization
from cifar_edge.models.registry import ModelOption, register_model


@register_model("tinyfam", input_size=16, normalization=Normalization((127.5,) * 3, (127.5,) * 3),
                description="global pool, dense(units), logits: a family in one file",
                recipe={"optimizer": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32}},
                options=(ModelOption("units", int, "dense units before the logits."),))
def tinyfam(num_classes, input_shape, units=4):
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Dense(units, activation="relu", name="hidden")(keras.layers.GlobalAveragePooling2D()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="logits")(x), name="tinyfam")
'''


def _cli_with_family(folder: Path, *args) -> subprocess.CompletedProcess:
    """`cifar-edge ARGS` in a new process whose models package also holds ``folder``'s modules."""
    code = (f"import sys, cifar_edge.models as m; m.__path__.append({str(folder)!r}); "
            f"sys.argv[1:] = {list(map(str, args))!r}; from cifar_edge.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


def test_a_new_family_is_one_module(tmp_path):
    family = tmp_path / "families"
    family.mkdir()
    (family / "tinyfam.py").write_text(textwrap.dedent(FAMILY))
    listed = _cli_with_family(family, "models", "tiny*", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)["models"]
    assert (row["name"], row["input_size"], row["recipe"]) == ("tinyfam", 16, {"optimizer": "sgd", "lr": 0.05,
                                                                                "batch_size": 32})
    run = tmp_path / "run"
    trained = _cli_with_family(family, "train", "--model", "tinyfam", "--units", "6", "--data", "synthetic",
                               "--synthetic-classes", "3", "--limit", "60", "--epochs", "1", "--out", run)
    assert trained.returncode == 0, trained.stderr
    config = json.loads((run / "config.json").read_text())["train"]
    assert (config["model"], config["model_options"], config["lr"]) == ("tinyfam", {"units": 6}, 0.05)
