"""`cifar-edge train --ray-workers N`: the train loop on N Ray Train workers (extra ``[ray]``).

Ray's ``TensorflowTrainer`` starts the workers and sets ``TF_CONFIG`` in each, so every worker
runs :func:`cifar_edge.train.train` under ``--strategy multiworker``, unchanged.  Under
MultiWorkerMirroredStrategy saving, checkpointing and evaluating are collective, so every
worker must make the same calls: rank 0 makes them on the run folder, every other rank on a
scratch copy of it that is deleted afterwards.  So rank 0 alone writes the run folder, and a
resume (after any worker was killed) restores every rank from rank 0's crash backup.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from .. import console
from ..errors import CifarEdgeError
from .config import TrainConfig

INSTALL = "pip install -e '.[ray]'"


def _ray():
    """Ray and its TensorFlow trainer, or one line saying how to install them."""
    try:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
    except ImportError:
        raise CifarEdgeError(f"--ray-workers needs Ray Train, which is not installed: {INSTALL}") from None
    from .. import _tf  # noqa: F401  (ray.train.tensorflow imports TensorFlow: legacy Keras first)
    from ray.train.tensorflow import TensorflowTrainer
    return ray, TensorflowTrainer, ScalingConfig, RunConfig, FailureConfig


def train_on_ray(cfg: TrainConfig, out_dir, workers: int, address: str | None = None, resume: bool = False,
                 given: dict | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` on ``workers`` Ray workers (a new local Ray instance, or the
    cluster at ``address``); returns rank 0's metrics, as :func:`cifar_edge.train.train` does."""
    if workers < 1:
        raise CifarEdgeError(f"--ray-workers {workers} is invalid; use 1 or more")
    ray, TensorflowTrainer, ScalingConfig, RunConfig, FailureConfig = _ray()
    from .. import _tf
    from ..runs import RunFolder
    run = RunFolder(Path(out_dir).absolute())
    if resume:                        # the run's own strategy is what its workers will build
        strategy = run.resumable("run", "Start a new run with another --out")["train"]["strategy"]
        if strategy != "multiworker":
            raise CifarEdgeError(f"{run.root} was trained with --strategy {strategy}, not on Ray workers; "
                                 "resume it without --ray-workers")
    else:
        if cfg.strategy not in ("auto", "multiworker"):
            raise CifarEdgeError(f"--ray-workers trains with --strategy multiworker, not {cfg.strategy}; "
                                 "drop --strategy")
        cfg = dataclasses.replace(cfg, strategy="multiworker")
        cfg.resolved()                # bad settings fail before Ray starts (train resolves again, for the data)
        if run.has_files():
            raise CifarEdgeError(f"run folder {run.root} is not empty; pass --resume to continue that run "
                                 "or choose a new --out")
    env = {**_tf.ENVIRONMENT, **{k: os.environ[k] for k in (console.VERBOSE_ENV, "TF_CPP_MIN_LOG_LEVEL")
                                 if k in os.environ}}
    quiet = "INFO" if console.verbose() else "ERROR"      # Ray's own lines, in every process it starts
    try:
        ray.init(address=address or "local", runtime_env={"env_vars": env}, include_dashboard=False,
                 logging_level=quiet, logging_config=ray.LoggingConfig(log_level=quiet))
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise CifarEdgeError(f"cannot start or reach {where} ({_gist(e)}); check --ray-address") from None
    storage = tempfile.mkdtemp(prefix="cifar-edge-ray-")   # Ray's own run records; ours are in the run folder
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < workers:
            raise CifarEdgeError(f"--ray-workers {workers} needs a CPU per worker and the Ray cluster has {cpus}; "
                                 f"use --ray-workers {max(cpus, 1)} or a larger cluster")
        largest = max(int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n["Alive"])
        threads = max(1, min(cpus // workers, largest))   # every core busy, none shared; each fits a node
        job = {"cfg": cfg.to_dict(), "out": str(run.root), "resume": resume, "given": given or {},
               "cwd": os.getcwd(), "threads": threads}
        trainer = TensorflowTrainer(
            _worker, train_loop_config=job,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": threads}),
            run_config=RunConfig(name="cifar-edge-train", storage_path=storage,
                                 failure_config=FailureConfig(max_failures=0)))
        try:
            trainer.fit()
        except Exception as e:      # Ray's TrainingFailedError: our own error, or a worker died
            raise _explain(e, run, workers) from None
    finally:
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    from ..fileio import read_json
    return read_json(run.metrics)


def _explain(error: Exception, run, workers: int) -> CifarEdgeError:
    """A failed Ray run as one line: a worker's own CifarEdgeError as it is, else what died and
    how to resume."""
    failures = getattr(error, "worker_failures", None) or {}
    for failure in failures.values():
        cause = failure
        while cause is not None:
            if isinstance(cause, CifarEdgeError):
                return CifarEdgeError(str(cause))
            cause = cause.__cause__ or cause.__context__
    what = "; ".join(f"rank {rank}: {_gist(e)}" for rank, e in sorted(failures.items())) or _gist(error)
    hint = (f"continue it with `cifar-edge train --out {run.root} --resume --ray-workers {workers}`"
            if run.config.is_file() else "nothing was kept; run the command again")
    return CifarEdgeError(f"a Ray worker failed ({what}); {hint}")


def _gist(e: BaseException) -> str:
    """A worker's failure in a few words: its process died (kill -9, out of memory), or the
    first line of what it raised (a peer's death shows as a failed collective op)."""
    import ray.exceptions
    e = getattr(e, "health_check_failure", e)    # Ray's health check of a worker, and why it failed
    if isinstance(e, (ray.exceptions.ActorDiedError, ray.exceptions.ActorUnavailableError)):
        return "its process died"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:160]


def _worker(job: dict):
    """One Ray Train worker: rank 0 trains into the run folder, the others into scratch copies."""
    from ray.train import get_context
    from ray.train.collective import barrier
    if os.path.isdir(job["cwd"]):
        os.chdir(job["cwd"])                   # relative --data paths mean what they meant to the user
    _limit_threads(job["threads"])
    from .loop import train
    cfg, out, rank = TrainConfig.from_dict(job["cfg"]), Path(job["out"]), get_context().get_world_rank()
    if rank == 0:
        barrier()                              # the others have copied the run folder
        train(cfg, out, resume=job["resume"], given=job["given"])
        return
    console.set_quiet(True)
    with tempfile.TemporaryDirectory(prefix=f"cifar-edge-rank{rank}-") as scratch:
        mirror = Path(scratch) / "run"
        if job["resume"]:
            shutil.copytree(out, mirror, ignore=shutil.ignore_patterns(".lock", "tensorboard"))
        os.environ["MLFLOW_TRACKING_URI"] = (Path(scratch) / "mlruns").as_uri()   # --mlflow: rank 0's alone
        barrier()
        train(cfg, mirror, resume=job["resume"], given=job["given"])


def _limit_threads(threads: int):
    """TensorFlow's thread pools sized to the CPUs Ray gave this worker (by default each takes
    every core of the machine, and N workers would fight over them)."""
    from .._tf import tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
