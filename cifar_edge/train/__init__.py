"""Training: config, schedules, callbacks, the resumable loop."""
from .config import TrainConfig
from .loop import train
from ..runs import RunFolder, load_model

__all__ = ["TrainConfig", "train", "RunFolder", "load_model"]
