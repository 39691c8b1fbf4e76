"""The page `cifar-edge serve` shows (index.html), shipped as package data."""
