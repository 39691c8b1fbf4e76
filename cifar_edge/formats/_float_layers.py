"""``--float-layers``: the names a user gives (the Keras layer names `diagnose` and the repair log
show, or the converter's node names) resolved to the nodes the quantizer takes.

The TFLite converter's denylist and onnxruntime's ``nodes_to_exclude`` take node names and
silently ignore any they do not know, so an unresolved name would write a plain int8 file
that export.json calls selective.  Here each name must match, or export stops and lists the
names that would.
"""
from __future__ import annotations

import difflib

from ..errors import CifarEdgeError
from ._quant_error import keras_layer_of


def match_float_layers(ctx, fmt, opts) -> tuple:
    """Node names for ``opts.float_layers`` in ``fmt``'s keep-in-float list (``fmt.float_layers.nodes``):
    a node name as is, a Keras layer name as the nodes it makes (the layer diagnose attributes them
    to, else every node that names it)."""
    order = {layer.name: i for i, layer in enumerate(ctx.model.layers)}
    nodes = fmt.float_layers.nodes(ctx, opts)
    layer_of = {n: keras_layer_of(n, order) for n in nodes}
    resolved, unknown = [], []
    for name in opts.float_layers:
        found = ([name] if name in layer_of else [n for n in nodes if layer_of[n] == name]
                 or [n for n in nodes if name in {p for piece in n.split(";") for p in piece.split("/")}])
        if not found:
            unknown.append(name)
        resolved.extend(n for n in found if n not in resolved)
    if unknown:
        valid = list(dict.fromkeys(layer_of.values()))
        close = [m for u in unknown for m in difflib.get_close_matches(u, valid, n=1)]
        raise CifarEdgeError(
            f"--float-layers {', '.join(unknown)}: no such layer in the {fmt.name} model"
            + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f"; valid names (as `cifar-edge diagnose` shows them): {', '.join(valid)}")
    return tuple(resolved)
