"""ONNX export: float32 through tf2onnx (explicit input signature, dynamic batch), int8 as
QDQ through onnxruntime's static quantization (per-channel by default) or by converting the
int8 .tflite.  Every file passes onnx.checker's full check before it is kept."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .._tf import tf
from ..errors import CifarEdgeError
from .formats import ExportOptions


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]


def check(path):
    """onnx.checker's full check (types and shapes inferred), or a clear error."""
    import onnx
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - ValidationError and friends
        raise CifarEdgeError(f"exported ONNX failed onnx.checker: {_first_line(e)}; try another --opset") from None


def _quiet_tf2onnx():
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


def float_onnx(ctx, path: Path, opset: int):
    import tf2onnx
    _quiet_tf2onnx()
    size = ctx.input_size
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    try:
        tf2onnx.convert.from_keras(ctx.model, input_signature=signature, opset=opset, output_path=str(path))
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"tf2onnx could not convert the model: {_first_line(e)}; "
                             "try another --opset or export TFLite") from None


class _Calibration:
    """onnxruntime's CalibrationDataReader over our normalized training images."""

    def __init__(self, images: np.ndarray, input_name: str, batch: int = 16):
        self._batches = iter([{input_name: images[i:i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # onnxruntime >= 1.20 may call it; our reader is single-pass
        pass


def int8_onnx_from_float(ctx, path: Path, opts: ExportOptions, work: Path):
    """Static QDQ quantization of the float ONNX: per-channel int8 weights, int8 activations."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static
    float_path, prep_path = work / "float.onnx", work / "float.prep.onnx"
    float_onnx(ctx, float_path, opts.opset)
    quant_pre_process(str(float_path), str(prep_path), skip_symbolic_shape=False)
    name = onnx.load(str(prep_path), load_external_data=False).graph.input[0].name
    try:
        quantize_static(str(prep_path), str(path), _Calibration(ctx.calibration, name), quant_format=QuantFormat.QDQ,
                        per_channel=opts.per_channel, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"onnxruntime static quantization failed: {_first_line(e)}; "
                             "try --from-tflite or export float ONNX") from None


def int8_onnx_from_tflite(ctx, path: Path, opts: ExportOptions, work: Path):
    """tf2onnx turns a full-int8 .tflite with float I/O into a QDQ ONNX model."""
    import tf2onnx
    from .tflite import convert
    _quiet_tf2onnx()
    tflite_path = work / "int8.tflite"
    tflite_path.write_bytes(convert(ctx, ExportOptions(int8=True, per_channel=opts.per_channel)))
    try:
        tf2onnx.convert.from_tflite(str(tflite_path), opset=opts.opset, output_path=str(path))
    except Exception as e:  # noqa: BLE001
        raise CifarEdgeError(f"tf2onnx could not convert the int8 .tflite: {_first_line(e)}; "
                             "use onnx int8 without --from-tflite") from None


ONNX_METADATA_KEY = "cifar_edge"


def embed_onnx_metadata(path, facts: dict):
    """The model facts as a ``cifar_edge`` JSON entry of the model's metadata_props, which
    onnxruntime exposes as ``get_modelmeta().custom_metadata_map`` (the .tflite carries the same)."""
    import json
    import onnx
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=json.dumps(facts, ensure_ascii=False))
    onnx.save(model, str(path))


def read_onnx_metadata(path) -> dict | None:
    """The ``cifar_edge`` entry of an .onnx file (None when it has none)."""
    import json
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == ONNX_METADATA_KEY), None)
    return None if value is None else json.loads(value)


def export_onnx(ctx, path: Path, opts: ExportOptions):
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cifar-edge-onnx-") as work:
        if not opts.int8 or ctx.qat and not opts.from_tflite:
            float_onnx(ctx, path, opts.opset)   # a QAT model's fake-quant ops become QDQ nodes
        elif opts.from_tflite:
            int8_onnx_from_tflite(ctx, path, opts, Path(work))
        else:
            int8_onnx_from_float(ctx, path, opts, Path(work))
    embed_onnx_metadata(path, ctx.model_facts(opts))
    check(path)
