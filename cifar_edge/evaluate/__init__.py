"""Evaluation: metrics, plots, Grad-CAM and the one-call report."""
from .gradcam import explain_images, find_gradcam_layer, gradcam
from .metrics import (classification_metrics, confusion_matrix, is_probabilities, predict_logits,
                      predict_probabilities, softmax, to_probabilities)
from .plots import (plot_confusion, plot_per_class, plot_prediction_grid, plot_training_curves, read_history,
                    write_confusion_csv)
from .report import evaluate_model
from .tta import tta_probabilities, tta_views

__all__ = ["classification_metrics", "confusion_matrix", "evaluate_model", "explain_images",
           "find_gradcam_layer", "gradcam", "is_probabilities", "plot_confusion", "plot_per_class",
           "plot_prediction_grid", "plot_training_curves", "predict_logits", "predict_probabilities", "read_history", "softmax",
           "to_probabilities", "tta_probabilities", "tta_views", "write_confusion_csv"]
