"""`cifar-edge evaluate RUN`: re-evaluate a finished run on a test split."""
from __future__ import annotations

from .data import load_dataset
from .errors import CifarEdgeError
from .evaluate import evaluate_model
from .fileio import write_json
from .runs import data_source, load_run


def evaluate_run(run_dir, data: str | None = None, limit: int | None = None, tta: bool = False):
    """Evaluate the run's model; writes ``RUN/evaluation/metrics.json`` and plots."""
    loaded = load_run(run_dir)
    train_cfg = loaded.config["train"]
    ds = load_dataset(data or data_source(loaded.config), labels=train_cfg.get("labels", "fine"),
                      verify=train_cfg.get("verify", True), synthetic_classes=train_cfg.get("synthetic_classes"),
                      synthetic_size=train_cfg.get("synthetic_size"), seed=train_cfg.get("seed", 0))
    if ds.x_test is None:
        raise CifarEdgeError(f"{ds.name} has no test split; pass --data with a source that has one")
    if ds.num_classes != len(loaded.class_names):
        raise CifarEdgeError(f"{ds.name} has {ds.num_classes} classes but the model was trained on "
                             f"{len(loaded.class_names)}; pass the --data it was trained on")
    x, y = (ds.x_test[:limit], ds.y_test[:limit]) if limit else (ds.x_test, ds.y_test)
    where = loaded.run.root / "evaluation"
    metrics = evaluate_model(loaded.model, x, y, class_names=loaded.class_names, norm=loaded.norm,
                             out_dir=where, image_size=loaded.input_size, fine_to_coarse=ds.fine_to_coarse,
                             coarse_names=ds.coarse_names, history_csv=loaded.run.history, split="test",
                             tta=tta)
    metrics["data"] = ds.source
    write_json(where / "metrics.json", metrics)
    return metrics, where
