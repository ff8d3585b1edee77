"""The torch-free runtime: load an exported bundle and embed aligned faces with the
bundle's own runtime (ONNX Runtime, OpenVINO, LiteRT, TensorRT). Never imports torch or
the training side of the kit."""
from .backends import BACKENDS, BackendError, InferenceBackend, available_backends, make_backend
from .bundle import Bundle, BundleError, load_bundle
from .face import CompareResult, EnrollResult, Face, FaceRecognizer, IdentifyResult, Rejection
from .gallery import Gallery, GalleryError

__all__ = ["BACKENDS", "BackendError", "Bundle", "BundleError", "CompareResult", "EnrollResult", "Face", "FaceRecognizer", "Gallery",
           "GalleryError", "IdentifyResult", "InferenceBackend", "Rejection", "available_backends", "load_bundle", "make_backend"]
