"""Model zoo in plain torch: one registry, one `create_model`.

    >>> from xbarforge.zoo import create_model, default_input_shape, list_models
    >>> model = create_model("resnet20", num_classes=10)            # built for 3x32x32
    >>> model = create_model("squeezenet1_1", input_size=64)        # any ImageNet-style model at 64x64
    >>> model = create_model("lenet5", in_channels=3, input_size=32)

Every model is traceable with `torch.fx.symbolic_trace`, uses BatchNorm2d where its paper does, and
carries `zoo_name` and `input_shape` (C, H, W) attributes when built through `create_model`.
"""

from xbarforge.zoo import densenet, lenet, mnsim_nets, mobilenet, resnet, squeezenet, vgg, vit  # noqa: F401  (registers)
from xbarforge.zoo.registry import (
    create_model,
    default_input_shape,
    list_models,
    register_model,
    resolve_input_shape,
)

__all__ = [
    "create_model",
    "default_input_shape",
    "list_models",
    "register_model",
    "resolve_input_shape",
]
