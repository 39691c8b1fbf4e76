"""The float Keras reference as an HDF5 file, so it sits in the export table beside the rest."""
from __future__ import annotations


def export_keras(ctx, path, opts):
    from ..train.runfolder import save_model
    save_model(ctx.model, path)
