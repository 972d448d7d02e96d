"""LayerGraph and the importers that build it (torch.fx, ONNX)."""

from xbarforge.graph.capture import cache_info, capture, clear_capture_cache
from xbarforge.graph.fx_capture import capture_module, fold_batchnorm
from xbarforge.graph.layer_graph import DIGITAL_KINDS, MVM_KINDS, Layer, LayerGraph
from xbarforge.graph.onnx_import import import_onnx, load_onnx

__all__ = [
    "DIGITAL_KINDS",
    "MVM_KINDS",
    "Layer",
    "LayerGraph",
    "cache_info",
    "capture",
    "capture_module",
    "clear_capture_cache",
    "fold_batchnorm",
    "import_onnx",
    "load_onnx",
]
