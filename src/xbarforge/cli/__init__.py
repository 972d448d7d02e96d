"""The `xbarforge` command line: `main` runs it (`xbarforge.cli.main`), one module per command."""

from xbarforge.cli.common import layers_plot_path, parse_samples, parse_shape
from xbarforge.cli.main import build_parser, main

__all__ = ["build_parser", "layers_plot_path", "main", "parse_samples", "parse_shape"]
