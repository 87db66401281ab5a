"""Keyface backend: the headless PyTorch service and its capabilities (see DESIGN.md for the layout)."""

__version__ = "0.1.0"
