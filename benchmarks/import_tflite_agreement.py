"""How closely Keras MobileNetV2 with weights rebuilt by `cifar-edge weights import-tflite`
follows the real int8 .tflite it came from, on real CIFAR images upsampled to 224.

Reports top-1 agreement over the 1001 ImageNet classes on 500 real CIFAR-100 test images,
how often the .tflite's top-1 is in the Keras top-5, agreement where the .tflite is confident,
and, as the yardstick for int8 noise, the agreement of the same float Keras model with its own
int8 conversion (post-training, calibrated on 100 other images) on the same 500.

    python benchmarks/import_tflite_agreement.py [--images 500]
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from common import SHARED_DATA, machine, need, write_results

TFLITE = "weights/mobilenet_v2_1.0_224_imagenet_tflite_quant/mobilenet_v2_1.0_224_quant.tflite"


def upsample(images: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(img).resize((224, 224), Image.Resampling.BILINEAR))
                     for img in images])


def run_tflite(model, images: np.ndarray) -> np.ndarray:
    """Dequantized outputs of a .tflite (path or bytes), one image at a time."""
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(**({"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for img in images:
        interp.set_tensor(inp["index"], img[None].astype(inp["dtype"]))
        interp.invoke()
        scale, zero = out["quantization"]
        raw = interp.get_tensor(out["index"])[0].astype(np.float32)
        rows.append((raw - zero) * scale if scale else raw)
    return np.stack(rows)


def own_int8(model, calibration: np.ndarray) -> bytes:
    from cifar_edge._tf import tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([calibration[i:i + 1]] for i in range(len(calibration)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return conv.convert()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    args = ap.parse_args()
    from cifar_edge.models.mobilenet import build_mobilenet_v2
    from cifar_edge.models.tflite_import import import_mobilenet_v2
    tflite = need(SHARED_DATA.parent / TFLITE)
    with np.load(need(SHARED_DATA / "cifar100" / "cifar100_test.npz")) as f:
        x = f["x_test"]
    rng = np.random.default_rng(0)
    picked = rng.choice(len(x), args.images, replace=False)
    calibration = rng.choice(np.setdiff1d(np.arange(len(x)), picked), 100, replace=False)
    images = upsample(x[picked])
    model = build_mobilenet_v2(1001, (224, 224, 3), dropout=0)
    import_mobilenet_v2(model, tflite, include_head=True)
    scaled = (images.astype(np.float32) - 127.5) / 127.5
    keras_out = model.predict(scaled, batch_size=50, verbose=0)
    theirs = run_tflite(tflite, images)
    agree = keras_out.argmax(1) == theirs.argmax(1)
    confident = theirs.max(1) > 0.3
    top5 = np.argsort(-keras_out, 1)[:, :5]
    calib = (upsample(x[calibration]).astype(np.float32) - 127.5) / 127.5
    own = run_tflite(own_int8(model, calib), scaled)
    result = {
        "images": int(args.images), "source": "real CIFAR-100 test images, bilinear 32 -> 224 px (seed 0)",
        "tflite": f"../shared/{TFLITE}",
        "top1_agreement": round(float(agree.mean()), 4),
        "tflite_top1_in_keras_top5": round(float(np.mean([t in k for t, k in zip(theirs.argmax(1), top5)])), 4),
        "tflite_confident_share": round(float(confident.mean()), 4),
        "top1_agreement_where_tflite_p_over_0.3": round(float(agree[confident].mean()), 4),
        "own_ptq_int8_vs_float_top1_agreement": round(float(np.mean(keras_out.argmax(1) == own.argmax(1))), 4),
        "machine": machine(),
    }
    md = ("# Imported MobileNetV2 weights against the int8 .tflite they came from\n\n"
          f"{args.images} real CIFAR-100 test images upsampled to 224 px, 1001 ImageNet classes.\n\n"
          "| measure | value |\n|---|---|\n"
          f"| top-1 agreement, Keras (imported, float) vs .tflite (int8) | {result['top1_agreement']:.1%} |\n"
          f"| .tflite top-1 within the Keras top-5 | {result['tflite_top1_in_keras_top5']:.1%} |\n"
          f"| top-1 agreement where the .tflite's top-1 probability > 0.3 ({confident.mean():.0%} of images) | "
          f"{result['top1_agreement_where_tflite_p_over_0.3']:.1%} |\n"
          f"| yardstick: the same float model vs its own int8 PTQ conversion | "
          f"{result['own_ptq_int8_vs_float_top1_agreement']:.1%} |\n")
    write_results("import_tflite_agreement", result, md)


if __name__ == "__main__":
    main()
