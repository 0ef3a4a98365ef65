"""The `adapters` command. Importing this package must not import torch."""

from .main import main

__all__ = ["main"]
