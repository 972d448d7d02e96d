"""A basis run on disk: `DIR/basis.pt` (everything needed to rebuild the network) and `DIR/basis.json`.

The file records the source model (how to rebuild it, its data facts), the whole hardware spec, the
layout parameters and unit-to-group assignment, the BasisNetwork's state and the history of what was
done to it (fit, training stages, with accuracies). `xbarforge basis fit` writes it; `basis train`
and `basis simulate` read and update it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xbarforge.basis.layout import BasisError, plan_basis
from xbarforge.basis.model import BasisNetwork
from xbarforge.errors import XbarforgeError
from xbarforge.hardware.spec import HardwareSpec
from xbarforge.train.modelio import atomic_save, atomic_write_text, build_from_arch, safe_load

__all__ = ["BASIS_FILE", "SUMMARY_FILE", "BasisRun", "load_run", "save_run"]

BASIS_FILE = "basis.pt"
SUMMARY_FILE = "basis.json"
FORMAT = "xbarforge-basis"
VERSION = 1


@dataclass
class BasisRun:
    """A fitted (possibly trained) basis network with where it came from and what happened to it."""

    net: BasisNetwork
    hw: HardwareSpec
    source: dict[str, Any]  # model file path, arch and meta of the network the basis was fitted to
    settings: dict[str, Any]  # crossbars, group_crossbars, coeff_bits, init, refine, seed
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.source["meta"]["input_shape"])

    def summary(self) -> dict[str, Any]:
        lay = self.net.layout
        return {
            "model": lay.model, "source": self.source.get("path"), "hardware": self.hw.name,
            **self.settings,
            "rows": lay.rows, "vectors": lay.vectors, "vectors_per_crossbar": lay.vectors_per_crossbar,
            "groups": lay.groups, "vectors_per_group": lay.vectors_per_group,
            "basis_weights": lay.basis_weights, "model_weights": lay.model_weights,
            "basis_fraction": lay.basis_fraction, "coefficients": lay.total_coefficients,
            "history": self.history,
        }


def save_run(run: BasisRun, out: str | Path) -> Path:
    """Write DIR/basis.pt and DIR/basis.json (atomically)."""
    from xbarforge.report.jsonio import dumps, to_jsonable

    d = Path(out).expanduser()
    if d.exists() and not d.is_dir():
        raise BasisError(f"output folder {d} is a file")
    d.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT, "version": VERSION,
        "source": to_jsonable(run.source, digits=None),
        "hardware": run.hw.model_dump(mode="json"),
        "settings": dict(run.settings),
        "assignment": {seg.name: list(seg.group_of_unit) for seg in run.net.layout.layers},
        "state": {k: v.detach().cpu() for k, v in run.net.state_dict().items()},
        "history": to_jsonable(run.history, digits=None),
    }
    atomic_save(doc, d / BASIS_FILE)
    atomic_write_text(d / SUMMARY_FILE, dumps(run.summary()))
    return d / BASIS_FILE


def load_run(path: str | Path, device: str | torch.device | None = None) -> BasisRun:
    """Rebuild a BasisRun from DIR or DIR/basis.pt; a bad file is one BasisError line."""
    from xbarforge.graph import capture

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / BASIS_FILE
    if not p.is_file():
        raise BasisError(f"no basis run at {p} (run `xbarforge basis fit ... --out DIR` first)")
    try:
        doc = safe_load(p, "basis file")
    except XbarforgeError as exc:
        raise BasisError(str(exc)) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BasisError(f"{p}: not an xbarforge basis file")
    if int(doc.get("version", 0)) > VERSION:
        raise BasisError(f"{p}: format version {doc.get('version')} is newer than this xbarforge reads")
    hw = HardwareSpec.model_validate(doc["hardware"])
    source = dict(doc["source"])
    settings = dict(doc["settings"])
    model = build_from_arch(source.get("arch"), f"basis file {p}")
    shape = tuple(int(v) for v in source["meta"]["input_shape"])
    graph = capture(model, shape)
    layout = plan_basis(graph, hw, int(settings["crossbars"]), int(settings["group_crossbars"]))
    layout = layout.with_assignment({k: tuple(v) for k, v in doc["assignment"].items()})
    state = doc["state"]
    coeffs = {seg.name: state[f"coeffs.{seg.name.replace('.', '__')}"] for seg in layout.layers}
    net = BasisNetwork(model, layout, state["basis"], coeffs, weight_bits=hw.precision.weight_bits,
                       coeff_bits=int(settings["coeff_bits"]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise BasisError(f"{p}: state does not fit the network ({' '.join(str(exc).split())[:200]})") from None
    if device is not None:
        net.to(device)
    return BasisRun(net.eval(), hw, source, settings, list(doc.get("history") or []))
