"""Optional MLflow logging (`--mlflow`, extra `cifar-edge[mlflow]`): params, per-epoch
metrics and the run folder's artifacts, in a local store inside the run folder unless
MLFLOW_TRACKING_URI says otherwise."""
from __future__ import annotations

import csv
import os

from .. import console
from ..errors import CifarEdgeError


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def log_to_mlflow(run, cfg, metrics: dict):
    try:
        import mlflow
    except ImportError:
        raise CifarEdgeError("--mlflow needs MLflow: pip install 'cifar-edge[mlflow]'") from None
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (run.root / "mlruns").resolve().as_uri()
    if uri.startswith("file:"):
        # A plain folder store needs no server or database; MLflow 3 asks for this opt-in.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("cifar-edge")
    with mlflow.start_run(run_name=run.root.name) as active:
        mlflow.log_params({k: str(v)[:250] for k, v in _flatten(cfg.to_dict()).items()})
        if run.history.is_file():
            with open(run.history, newline="") as f:
                for row in csv.DictReader(f):
                    step = int(row.pop("epoch"))
                    mlflow.log_metrics({k: float(v) for k, v in row.items() if v not in ("", None)}, step=step)
        split = str(metrics.get("split", "final")).replace(" ", "_")   # e.g. test_top1, apart from per-epoch names
        mlflow.log_metrics({f"{split}_{k}": float(v) for k, v in metrics.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool)})
        for p in sorted(run.root.iterdir()):
            if p.is_file() and not p.name.startswith(".") and p.suffix in (".json", ".csv", ".png", ".txt", ".keras", ".h5"):
                mlflow.log_artifact(str(p))
        console.info(f"logged to MLflow run {active.info.run_id} at {uri}")
