"""A real client in CI: MediaPipe Tasks' ImageClassifier (the task library Android apps use)
classifies real CIFAR images with every exported .tflite variant of the default CNN, told
nothing but the file (see mediapipe_check): on 32-px images its top-1 and scores equal ours;
on larger images, which it resizes its own way, top-1 agrees within the stated tolerance.
MobileNetV2's variants are checked the same way in test_families_fresh, on the run it
already exports (converting MobileNetV2 seven times costs ~100 CPU seconds)."""
from __future__ import annotations

import numpy as np

from cifar_edge.formats import variants
from mediapipe_check import compare, require_mediapipe

IMAGES = 200


def test_mediapipe_reads_every_variant_and_agrees_exactly(exported_run, cifar10_real, tmp_path):
    require_mediapipe()
    run, exported = exported_run
    assert {n for n, e in exported.items() if e["format"] == "tflite"} == \
        {n for n, v in variants().items() if v.fmt.name == "tflite"}
    agreement = compare(run, cifar10_real[2][:IMAGES], tmp_path)
    assert set(agreement) == {"tflite-float32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-int8-io-uint8",
                              "tflite-int16x8"}     # every variant but int8 I/O, which MediaPipe refuses (checked)


def test_mediapipe_resizes_larger_images_within_tolerance(exported_run, cifar10_real, tmp_path):
    """Photos come larger than the model's input: MediaPipe resizes them itself, we resize
    with the training pipeline's bilinear, so top-1 may differ on a few images."""
    from PIL import Image
    require_mediapipe()
    run, _ = exported_run
    large = np.stack([np.asarray(Image.fromarray(x).resize((64, 64), Image.Resampling.BICUBIC))
                      for x in cifar10_real[2][:IMAGES]])
    agreement = compare(run, large, tmp_path)
    assert len(agreement) == 6, agreement
