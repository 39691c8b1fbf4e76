"""Run the cifar-edge CLI and SIGKILL it at one named moment, for the reliability tests.

``CRASH_AT`` picks the moment (a real ``kill -9``: no cleanup, no finally blocks):

- ``replace:NAME[:N]``: the Nth time a finished temp file is about to be renamed onto NAME
  (model.keras, best.keras, metrics.json ...): the temp file is complete, the final one not there;
- ``batch:E:S``: after training step S of epoch E (1-based), mid-epoch;
- ``sigint:E:S``: the same moment, but Ctrl-C (SIGINT: Python's KeyboardInterrupt) instead;
- ``checkpoint:N``: inside the Nth crash backup, after its data files are written and before
  TensorFlow records it as the latest checkpoint.

Usage: ``CRASH_AT=... python tests/crash_driver.py train --out RUN ...``
"""
import os
import signal
import sys


def _die(sig=signal.SIGKILL):
    os.kill(os.getpid(), sig)


def _install(spec: str):
    kind, *args = spec.split(":")
    if kind == "replace":
        name, nth, seen = args[0], int(args[1]) if len(args) > 1 else 1, [0]
        real = os.replace

        def replace(src, dst, *a, **kw):
            if os.path.basename(os.fspath(dst)) == name:
                seen[0] += 1
                if seen[0] == nth:
                    _die()
            return real(src, dst, *a, **kw)
        os.replace = replace
    elif kind in ("batch", "sigint"):
        from cifar_edge.train import callbacks
        epoch, step = int(args[0]), int(args[1])
        sig = signal.SIGKILL if kind == "batch" else signal.SIGINT
        original = callbacks.Progress.on_train_batch_end

        def on_train_batch_end(self, batch, logs=None):
            original(self, batch, logs)
            if self._epoch + 1 == epoch and batch + 1 == step:
                _die(sig)
        callbacks.Progress.on_train_batch_end = on_train_batch_end
    elif kind == "checkpoint":
        from cifar_edge._tf import tf
        manager = tf.train.CheckpointManager
        nth, seen, original = int(args[0]), [0], manager._record_state

        def record_state(self):
            seen[0] += 1
            if seen[0] == nth:
                _die()
            return original(self)
        manager._record_state = record_state
    elif spec:
        raise SystemExit(f"unknown CRASH_AT {spec!r}")


if __name__ == "__main__":
    _install(os.environ.get("CRASH_AT", ""))
    from cifar_edge.cli import app
    sys.argv[0] = "cifar-edge"
    app()
