"""The disk-imaging engine: importable without any user interface."""

__version__ = "0.1.0"
