"""Built-in models, registered by name."""
from .cnn import MICRO_WIDTHS, NARROW_WIDTHS, build_cnn
from .convnext import IMAGENET_NORM, build_convnext, weights_here
from .convnext import backbone_blocks as convnext_blocks
from .mobilenet import IMAGENET_PM1, build_mobilenet_v2, imagenet_weights_here
from .mobilenet import backbone_blocks as mobilenet_blocks
from .registry import CIFAR_NORM, register_model
from .resnet import CAFFE_RGB, build_resnet50
from .resnet import backbone_blocks as resnet_blocks
from .resnet import weights_here as resnet_weights_here

# airbench94's recipe (Jordan 2024), in keras terms.  Its lr 11.5 and weight decay 0.0153
# are "per 1024 examples" of a summed loss, scaled down by 1 + 1/(1 - momentum); for a mean
# loss at batch B that is lr 11.5 / (1 + 1/0.15) * B / 1024 (1.5 at 1024) and an L2 term of
# 0.0153 / 11.5 through the momentum.  `cifar-edge train --model cnn` uses it unless flags
# override it; a smaller batch scales the lr with it (TrainConfig.resolved).  Its QAT fine-tune
# (`optimize --qat`) takes the run's lr / 500, not / 10: with BatchNorm biases at 64 x the lr,
# one QAT epoch of the real CIFAR-10 default lost 0.54 points at / 10, 0.35 at / 100 and 0.24
# at / 500 (int8 file against float, 10k test images, seed 0; benchmarks/compress_cifar10.py);
# cnn-micro shares the recipe, so its divisor too (not measured on it separately).
AIRBENCH_RECIPE = {"optimizer": "sgd-l2", "lr": 11.5 / (1 + 1 / 0.15), "momentum": 0.85, "nesterov": True,
                   "weight_decay": 0.0153 / 11.5, "schedule": "triangle", "warmup_epochs": 0.23,
                   "label_smoothing": 0.2, "batch_size": 1024, "whiten": True, "whiten_bias_epochs": 3,
                   "bn_bias_lr": 64.0, "logit_scale": 1 / 9, "lookahead": True, "alternate_flip": True, "tta": True,
                   "qat_lr_divisor": 500}

# The residual net's recipe (the default until airbench's port), kept for cnn-tiny.
RESIDUAL_RECIPE = {"optimizer": "sgd", "lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3,
                   "schedule": "onecycle", "warmup_epochs": 0.2, "label_smoothing": 0.2, "batch_size": 512}


@register_model("cnn", input_size=32, normalization=CIFAR_NORM, recipe=AIRBENCH_RECIPE,
                description="airbench94's CNN for 32x32 (whitened stem, 64/256/256), tfmot-ready")
def cnn(num_classes, input_shape, **options):
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **{"layout": "airbench", **options})


@register_model("cnn-tiny", input_size=32, normalization=CIFAR_NORM, recipe=RESIDUAL_RECIPE,
                description="half-width, shallower residual CNN: seconds per epoch, for tests and smoke runs")
def cnn_tiny(num_classes, input_shape, **options):
    options = {"base_widths": NARROW_WIDTHS, "width": 0.5, "depth": (0, 1, 0), **options}
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)


@register_model("cnn-micro", input_size=32, normalization=CIFAR_NORM, recipe=AIRBENCH_RECIPE,
                description="airbench's CNN at 64/160/160 for microcontrollers: 0.84 MB int8, small arena")
def cnn_micro(num_classes, input_shape, **options):
    options = {"layout": "airbench", "base_widths": MICRO_WIDTHS, **options}
    return build_cnn(num_classes=num_classes, input_shape=input_shape, **options)


# Fine-tuning from ImageNet weights: AdamW at a low rate; 96 px keeps a CPU epoch short.
TRANSFER_RECIPE = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine",
                   "warmup_epochs": 0.5, "label_smoothing": 0.1, "batch_size": 64}


@register_model("mobilenetv2", input_size=96, normalization=IMAGENET_PM1, recipe=TRANSFER_RECIPE, family="transfer",
                weights_info=imagenet_weights_here, blocks=mobilenet_blocks,
                description="MobileNetV2 (keras.applications, built flat; --alpha 0.35..1.4, --weights "
                            "imagenet|none|PATH), images upsampled in the pipeline")
def mobilenetv2(num_classes, input_shape, **options):
    return build_mobilenet_v2(num_classes=num_classes, input_shape=input_shape, **options)


def _register_convnext(variant: str, input_size: int, description: str):
    @register_model(f"convnext-{variant}", input_size=input_size, normalization=IMAGENET_NORM,
                    recipe=TRANSFER_RECIPE, family="transfer", weights_info=weights_here(variant),
                    blocks=convnext_blocks, description=description)
    def convnext(num_classes, input_shape, **options):
        return build_convnext(num_classes=num_classes, input_shape=input_shape, variant=variant, **options)


_register_convnext("nano", 32, "ConvNeXt at CPU size (depths 2-2-6-2, widths 48..384), flat, tfmot/TFLite/ONNX-ready")
for _name in ("tiny", "small", "base"):
    _register_convnext(_name, 96, f"ConvNeXt-{_name.capitalize()} (flat reimplementation; loads keras' official "
                                  "weights by layer name; --weights imagenet|none|PATH)")


@register_model("resnet50", input_size=96, normalization=CAFFE_RGB, recipe=TRANSFER_RECIPE, family="transfer",
                weights_info=resnet_weights_here, blocks=resnet_blocks,
                description="ResNet50 baseline (keras.applications, built flat; --weights imagenet|none|PATH)")
def resnet50(num_classes, input_shape, **options):
    return build_resnet50(num_classes=num_classes, input_shape=input_shape, **options)
