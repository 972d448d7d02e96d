"""Training, evaluation and model files.

    >>> from xbarforge.data import load_dataset
    >>> from xbarforge.train import evaluate, load_model, train
    >>> from xbarforge.zoo import create_model
    >>> data = load_dataset("cifar10", "../shared/data/cifar10")
    >>> result = train(create_model("resnet20"), data, epochs=15, out_dir="runs/r20")
    >>> model, meta = load_model("runs/r20/model.pt")
    >>> evaluate(model, data.with_stats(meta["mean"], meta["std"]))["accuracy"]
"""

from xbarforge.train.loop import (
    CHECKPOINT,
    METRICS_FILE,
    MODEL_FILE,
    TrainResult,
    auto_batch_size,
    auto_lr,
    evaluate,
    has_conv2d,
    model_device,
    train,
    uses_channels_last,
)
from xbarforge.train.modelio import (
    build_from_arch,
    load_model,
    pick_device,
    plain_state_dict,
    read_model_file,
    save_model,
)

__all__ = [
    "CHECKPOINT",
    "METRICS_FILE",
    "MODEL_FILE",
    "TrainResult",
    "build_from_arch",
    "evaluate",
    "auto_batch_size",
    "auto_lr",
    "has_conv2d",
    "load_model",
    "model_device",
    "pick_device",
    "plain_state_dict",
    "read_model_file",
    "save_model",
    "train",
    "uses_channels_last",
]
