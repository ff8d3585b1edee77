"""Export to ONNX / OpenVINO / TFLite / TensorRT as verified, self-describing bundles
(training side: the converters import torch; the bundles they write are read torch-free by
edgeface.runtime)."""
from .bundle_writer import ExportOptions, export_bundle, load_source

__all__ = ["ExportOptions", "export_bundle", "load_source"]
