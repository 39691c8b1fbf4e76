"""PyTorch models saved as an ExportedProgram (``torch.export.save`` -> .pt2), with a dynamic
batch dimension.  torch is the reference; litert-torch makes the .tflite files (float32, and
int8 through PT2E calibrated on the run's images), torch.onnx (dynamo) the .onnx, and the
formats made from an .onnx convert that.  Every file takes NHWC input, as the Android app and
MediaPipe expect.  An optional extra: ``pip install -e '.[torch]'``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import console
from ..errors import CifarEdgeError
from ._base import SourceKind, SourceModel, image_layout, register

INSTALL = "pip install -e '.[torch]' (torch and litert-torch)"


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".pt2"


def _torch():
    try:
        import torch
    except ImportError:
        raise CifarEdgeError(f"a .pt2 needs PyTorch, which is not installed: {INSTALL}") from None
    return torch


def _input_shape(program) -> list:
    """The first user input's shape, symbolic dimensions as None."""
    name = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    return [int(d) if str(d).lstrip("-").isdigit() else None for d in node.meta["val"].shape]


def _load(path: Path, options):
    torch = _torch()
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - zip, pickle and version errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:140]
        raise CifarEdgeError(f"{path} is not a PyTorch ExportedProgram torch can load ({first}); save one with "
                             "torch.export.save(torch.export.export(model, (x,), dynamic_shapes=...), 'model.pt2')") from None
    shape = _input_shape(program)
    layout, height, width = image_layout(shape, options.layout)
    if shape[0] is not None:
        raise CifarEdgeError(f"{path.name} was exported for a fixed batch of {shape[0]}; export it with a dynamic batch: "
                             "torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim('batch')},))")
    inner = program.module()
    with torch.no_grad():
        # litert-torch reads a weight's storage as if it were contiguous: the channels_last weights
        # of PyTorch's fast-path code (airbench94's net) came out scrambled (80% top-1 agreement).
        for tensor in [*inner.parameters(), *inner.buffers()]:
            tensor.data = tensor.data.contiguous()

    class NHWC(torch.nn.Module):
        """The user's program behind an NHWC input, so every file made from it takes what the others take."""

        def __init__(self):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2) if layout == "nchw" else x)

    model = NHWC()
    sample = torch.zeros(1, height, width, 3)
    with torch.no_grad():
        classes = int(model(sample).shape[-1])

    def predict(x):
        with torch.no_grad():
            return model(torch.from_numpy(np.array(x, np.float32))).numpy()   # a copy: a loaded split is read-only

    def onnx(path_out, opset):
        with console.chatter_hidden():
            _onnx(path_out, opset)

    def _onnx(path_out, opset):
        batch = torch.export.Dim("batch")              # traced at batch 2: torch specializes a batch of 1
        exported = torch.export.export(model, (torch.zeros(2, height, width, 3),), dynamic_shapes=({0: batch},))
        torch.onnx.export(exported, dynamo=True, input_names=["image"], opset_version=max(opset, 18)).save(str(path_out))

    def tflite(opts, calibration):
        with console.chatter_hidden():
            return _tflite(opts, calibration)

    def _tflite(opts, calibration):
        import litert_torch
        if opts.quantization != "int8":
            return _flatbuffer(litert_torch.convert(model, (sample,)))
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e
        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=opts.per_channel))
        graph = torch.export.export(model, (sample,)).module()
        _explicit_conv_padding(graph)
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for image in calibration:
                prepared(torch.from_numpy(np.ascontiguousarray(image[None], np.float32)))
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        from ..formats._tflite_convert import retype_io
        data = _flatbuffer(litert_torch.convert(converted, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)))
        return retype_io(data, opts.io)        # litert-torch writes int8 I/O: float or uint8 as asked

    return SourceModel("torch", "torch", (None, height, width, 3), (None, classes), predict, layout=layout,
                       native=program, onnx=onnx, tflite=tflite), {"runtime": "torch"}


def _explicit_conv_padding(graph):
    """Rewrite ``conv2d(padding="same"|"valid")`` as the same conv with integer padding.

    litert-torch's PT2E quantizer annotates only the integer-padding overload of conv2d: a
    string-padded conv stayed float in the "int8" file (airbench94's net: 7.9 MB, as large as the
    float file).  'same' at stride 1 with an odd kernel is symmetric padding (k - 1) / 2 per side
    (times the dilation); an even kernel pads unevenly and is left as it is."""
    import torch
    defaults = (None, None, None, [1, 1], "valid", [1, 1], 1)     # conv2d.padding's signature
    for node in graph.graph.nodes:
        if node.op != "call_function" or node.target != torch.ops.aten.conv2d.padding or node.kwargs:
            continue
        x, weight, bias, stride, padding, dilation, groups = (*node.args, *defaults[len(node.args):])
        kh, kw = weight.meta["val"].shape[-2:]
        if padding == "valid":
            pads = [0, 0]
        elif padding == "same" and kh % 2 and kw % 2:
            pads = [dilation[0] * (kh - 1) // 2, dilation[1] * (kw - 1) // 2]
        else:
            continue
        node.target = torch.ops.aten.conv2d.default
        node.args = (x, weight, bias, stride, pads, dilation, groups)
    graph.graph.lint()
    graph.recompile()


def _flatbuffer(edge_model) -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cifar-edge-torch-") as work:
        path = Path(work) / "model.tflite"
        edge_model.export(str(path))
        return path.read_bytes()


def _refusal(fmt_name: str, opts) -> str | None:
    if fmt_name == "tflite" and (opts.quantization in ("fp16", "dynamic", "int16x8") or opts.float_layers):
        return "litert-torch makes float32 and int8 (PT2E) files; fp16, dynamic-range, int16x8 and float layers are not offered"
    if fmt_name == "onnx" and opts.from_tflite:
        return "--from-tflite converts TensorFlow's int8 .tflite; use onnx-int8 (onnxruntime's quantization)"
    return None


register(SourceKind("torch", "a PyTorch ExportedProgram .pt2 (torch.export.save, dynamic batch; pip install -e '.[torch]')",
                    _detect, _load, order=3, makes=("tflite", "onnx"), extra_refusal=_refusal))
