"""The names `load_dataset` knows (light: the command line offers them without importing torch)."""

DATASETS = ("cifar10", "cifar100", "digits", "folder")
