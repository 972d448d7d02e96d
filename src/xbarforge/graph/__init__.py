"""LayerGraph and the importers that build it (torch.fx, ONNX)."""

from xbarforge.graph.layer_graph import DIGITAL_KINDS, MVM_KINDS, Layer, LayerGraph

__all__ = ["DIGITAL_KINDS", "MVM_KINDS", "Layer", "LayerGraph"]
