"""Search spaces: a declarative list of genes, and how a genome becomes a network.

A genome is a list of integers, one per gene, each an index into that gene's options; NSGA-II
breeds genomes, the space decodes them into an `arch` (gene name -> option value, JSON-able) and
builds the standalone network or its LayerGraph. Spaces are registered by name like zoo models
(`xbarforge.search.registry`):

    space = create_space("mbv3-small", resolution=64)
    arch = space.decode(space.sample(np.random.default_rng(0)))
    model = space.build(arch)

A user declares a space of their own with `declare_space(name, genes, build)`; the built-in spaces
(`mbv3-small`, `nax-resnet20`) subclass `SearchSpace` to add a supernet and a fast LayerGraph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from xbarforge.errors import XbarforgeError
from xbarforge.graph.capture import capture
from xbarforge.graph.layer_graph import LayerGraph

Genome = list[int]
Arch = dict[str, Any]


class SpaceError(XbarforgeError):
    """A genome, arch or space declaration that does not fit the space (one line)."""


@dataclass(frozen=True)
class Gene:
    """One decision: a name and the values it can take (index 0 = the smallest choice)."""

    name: str
    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise SpaceError("gene: a gene needs a name")
        if len(self.options) < 1:
            raise SpaceError(f"gene '{self.name}': needs at least one option")

    @property
    def cardinality(self) -> int:
        return len(self.options)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class SearchSpace:
    """Genes plus `build`; subclasses may add a faster `layer_graph` and per-layer crossbar sizes."""

    name: str = "space"
    genes: tuple[Gene, ...] = ()
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10

    # ---- genome <-> arch ----

    @property
    def cardinalities(self) -> list[int]:
        return [g.cardinality for g in self.genes]

    def check_genome(self, genome: Sequence[int]) -> Genome:
        if len(genome) != len(self.genes):
            raise SpaceError(f"space '{self.name}': genome has {len(genome)} genes, the space {len(self.genes)}")
        out = [int(v) for v in genome]
        for g, v in zip(self.genes, out, strict=True):
            if not 0 <= v < g.cardinality:
                raise SpaceError(f"space '{self.name}': gene '{g.name}' index {v} not in 0..{g.cardinality - 1}")
        return out

    def decode(self, genome: Sequence[int]) -> Arch:
        """Gene name -> chosen value (tuples as lists, so the arch is JSON-able)."""
        genome = self.check_genome(genome)
        return {g.name: _jsonable(g.options[v]) for g, v in zip(self.genes, genome, strict=True)}

    def encode(self, arch: Mapping[str, Any]) -> Genome:
        missing = [g.name for g in self.genes if g.name not in arch]
        if missing:
            raise SpaceError(f"space '{self.name}': arch lacks gene '{missing[0]}'")
        genome = []
        for g in self.genes:
            values = [_jsonable(o) for o in g.options]
            value = _jsonable(arch[g.name])
            if value not in values:
                raise SpaceError(f"space '{self.name}': gene '{g.name}' has no option {value!r}")
            genome.append(values.index(value))
        return genome

    def sample(self, rng: np.random.Generator) -> Genome:
        return [int(rng.integers(g.cardinality)) for g in self.genes]

    def largest(self) -> Genome:
        """The genome of the largest sub-net (every gene at its last option)."""
        return [g.cardinality - 1 for g in self.genes]

    def smallest(self) -> Genome:
        return [0 for _ in self.genes]

    def seeds(self) -> list[Genome]:
        """Genomes put in NSGA-II's first population (the rest is random): the extremes of the space."""
        return [self.largest(), self.smallest()]

    @property
    def size(self) -> float:
        """How many genomes the space holds."""
        return float(np.prod([float(c) for c in self.cardinalities]))

    # ---- networks ----

    def build(self, arch: Arch) -> nn.Module:
        """The standalone network of `arch` (freshly initialised)."""
        raise NotImplementedError

    def layer_graph(self, arch: Arch) -> LayerGraph:
        """What the compiler maps; default: capture the built network (spaces override it for speed)."""
        return capture(self.build(arch), self.input_shape, num_classes=self.num_classes)

    def crossbar_sizes(self, arch: Arch) -> dict[str, int] | None:
        """Crossbar size per MVM layer when the space chooses it (NAX), else None (the chip's own)."""
        return None

    def describe(self, arch: Arch) -> str:
        return ", ".join(f"{k}={v}" for k, v in arch.items())

    def to_dict(self) -> dict[str, Any]:
        """What a results folder records to rebuild this space."""
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "genes": [{"name": g.name, "options": [_jsonable(o) for o in g.options]} for g in self.genes]}


class FunctionSpace(SearchSpace):
    """A user's space: genes and a function arch -> nn.Module (see `declare_space`)."""

    def __init__(self, name: str, genes: Sequence[Gene], build: Callable[[Arch], nn.Module],
                 input_shape: tuple[int, int, int], num_classes: int = 10) -> None:
        names = [g.name for g in genes]
        if not genes:
            raise SpaceError(f"space '{name}': declare at least one gene")
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise SpaceError(f"space '{name}': gene '{dup}' declared twice")
        self.name = name
        self.genes = tuple(genes)
        self._build = build
        self.input_shape = tuple(input_shape)  # type: ignore[assignment]
        self.num_classes = num_classes

    def build(self, arch: Arch) -> nn.Module:
        model = self._build(dict(arch))
        if not isinstance(model, nn.Module):
            raise SpaceError(f"space '{self.name}': build returned {type(model).__name__}, not an nn.Module")
        return model


def declare_space(name: str, genes: Mapping[str, Sequence[Any]], build: Callable[[Arch], nn.Module],
                  input_shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10) -> FunctionSpace:
    """A search space from a dict of gene name -> options and a builder, e.g.

        declare_space("mlp", {"width": [16, 32, 64], "depth": [1, 2]}, lambda a: make_mlp(**a), (1, 8, 8))
    """
    return FunctionSpace(name, [Gene(k, tuple(v)) for k, v in genes.items()], build, input_shape, num_classes)
