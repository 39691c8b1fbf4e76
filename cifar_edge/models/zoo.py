"""Built-in models, registered by name."""
from .cnn import build_cnn
from .registry import CIFAR_NORM, register_model

# Measured on the 2-core CPU (benchmarks/train_cifar10.py): this recipe is what buys the
# accuracy per CPU-second; `cifar-edge train --model cnn` uses it unless flags override it.
CNN_RECIPE = {"optimizer": "sgd", "lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3,
              "schedule": "onecycle", "warmup_epochs": 0.2, "label_smoothing": 0.2, "batch_size": 512}


@register_model("cnn", input_size=32, normalization=CIFAR_NORM, recipe=CNN_RECIPE,
                description="residual CNN for 32x32 (ResNet-9/airbench-style), tfmot-ready")
def cnn(num_classes, input_shape, **options):
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)


@register_model("cnn-tiny", input_size=32, normalization=CIFAR_NORM, recipe=CNN_RECIPE,
                description="half-width, shallower residual CNN: seconds per epoch, for tests and smoke runs")
def cnn_tiny(num_classes, input_shape, **options):
    options = {"width": 0.5, "depth": (0, 1, 0), **options}
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)
