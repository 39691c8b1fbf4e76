"""cifar-edge: train a CIFAR classifier and take it all the way to a file a phone can run.

The functions a script needs are here (docs/library.md); importing the package loads no TensorFlow."""
from . import api
from .api import *  # noqa: F401,F403 - the public functions, listed in api.__all__

__version__ = "0.1.0"
__all__ = api.__all__
