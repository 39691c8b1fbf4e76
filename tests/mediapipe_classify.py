"""MediaPipe Tasks' ImageClassifier on .tflite files, run in its own virtualenv (mediapipe
pins absl-py 2, tfmot 0.8 absl-py 1): nothing but the file and its metadata tells it the
input type, normalization and labels.

    python mediapipe_classify.py IMAGES.npy MODEL.tflite [MODEL.tflite ...]

IMAGES.npy: uint8 RGB (N, H, W, 3).  Prints one JSON object: per model, the scores of every
class per image (in class-index order) and the label MediaPipe gave class 0, or the error
MediaPipe raised.
"""
import json
import sys

import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision


def classify(model: str, images: np.ndarray) -> dict:
    try:
        options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=-1)
        with vision.ImageClassifier.create_from_options(options) as classifier:
            rows, labels = [], {}
            for pixels in images:
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
                categories = classifier.classify(image).classifications[0].categories
                scores = [0.0] * len(categories)
                for c in categories:
                    scores[c.index] = c.score
                    labels[c.index] = c.category_name
                rows.append(scores)
    except Exception as e:  # noqa: BLE001 - the test reports MediaPipe's refusal as it is
        return {"error": f"{type(e).__name__}: {e}"}
    return {"scores": rows, "labels": [labels[i] for i in sorted(labels)]}


if __name__ == "__main__":
    images = np.load(sys.argv[1])
    print(json.dumps({model: classify(model, images) for model in sys.argv[2:]}))
