"""ONNX models (.onnx, with external data beside it or inside): onnxruntime is the reference,
the .onnx files (and what converts them) are made from the graph itself (NHWC input in front, quantized by
onnxruntime for int8).  No maintained ONNX-to-TFLite converter installs beside TensorFlow 2.21,
so the TFLite rows say so."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CifarEdgeError
from ._base import SourceKind, SourceModel, image_layout, register


def _detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".onnx"


def external_files(path: Path) -> list[Path]:
    """The external data files the .onnx names, each checked to exist beside it (inside its folder)."""
    import onnx
    from onnx.external_data_helper import uses_external_data
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise CifarEdgeError(f"{path} is not a readable ONNX model ({type(e).__name__}); export it again") from None
    folder = path.parent.resolve()
    files = []
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        data = (folder / location).resolve()
        if folder not in data.parents:
            raise CifarEdgeError(f"{path} points its weights outside its folder ({location}); refusing it")
        if not data.is_file():
            raise CifarEdgeError(f"{path} keeps its weights in the external data file {location}, which is missing; "
                                 f"put it beside the .onnx (torch.onnx.export writes it as {path.name}.data)")
        if data not in files:
            files.append(data)
    return files


def nhwc_graph(path: Path, layout: str):
    """The model (external data loaded) with an NHWC float input named ``image``: a Transpose in front
    of an NCHW graph, so every file made from it takes what every other file takes."""
    import onnx
    from onnx import helper
    model = onnx.load(str(path))
    graph = model.graph
    old = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in old.type.tensor_type.shape.dim]
    if layout == "nhwc":
        return model
    n, c, h, w = dims
    image = helper.make_tensor_value_info("image", onnx.TensorProto.FLOAT, [n or "N", h, w, c])
    graph.node.insert(0, helper.make_node("Transpose", ["image"], [old.name], perm=[0, 3, 1, 2], name="nhwc_to_nchw"))
    graph.input.remove(old)
    graph.input.insert(0, image)
    return model


def _load(path: Path, options):
    import onnxruntime as ort
    external_files(path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        raise CifarEdgeError(f"onnxruntime cannot load {path} ({str(e).splitlines()[0][:140]}); export it again") from None
    inp, out = sess.get_inputs()[0], sess.get_outputs()[0]
    layout, *hw = image_layout([d if isinstance(d, int) else None for d in inp.shape], options.layout)
    if not all(isinstance(d, int) for d in hw):
        raise CifarEdgeError(f"the model's input has no fixed height and width ({list(inp.shape)}); re-export it "
                             "with a fixed input size")
    classes = out.shape[-1] if isinstance(out.shape[-1], int) else None

    def predict(x):
        x = np.transpose(x, (0, 3, 1, 2)) if layout == "nchw" else x
        return np.asarray(sess.run(None, {inp.name: np.ascontiguousarray(x, np.float32)})[0], np.float32)

    def onnx_file(path_out, opset):
        import onnx
        onnx.save(nhwc_graph(path, layout), str(path_out))      # one file: external data inlined

    return SourceModel("onnx", "onnxruntime", (None, hw[0], hw[1], 3), (None, classes), predict, layout=layout,
                       native=str(path), onnx=onnx_file), {"runtime": "onnxruntime"}


register(SourceKind("onnx", "an .onnx (external data beside it is read too)", _detect, _load, order=2, makes=("onnx",),
                    why_not="no maintained ONNX-to-TFLite converter installs beside TensorFlow 2.21 (onnx2tf pins TF "
                            "2.19 and downloads data at run time); use the .onnx and the formats made from it"))
