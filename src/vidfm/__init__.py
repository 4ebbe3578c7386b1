"""vidfm: train, distil, evaluate and serve video foundation encoders in one PyTorch codebase."""

__version__ = "0.1.0"
