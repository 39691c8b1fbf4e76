"""cifar-edge: train a CIFAR classifier and take it all the way to a file a phone can run."""
__version__ = "0.1.0"
