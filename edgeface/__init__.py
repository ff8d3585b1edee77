"""edgeface: face-recognition models from training to phones and embedded boards."""
__version__ = "0.1.0"
