"""The float Keras reference as an HDF5 file, so it sits in the export table beside the rest."""
from __future__ import annotations


def export_keras(ctx, path, opts):
    ctx.model.save(path)
