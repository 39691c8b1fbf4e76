"""``python -m cifar_edge``: the same as the ``cifar-edge`` command."""
from .cli import main

main()
