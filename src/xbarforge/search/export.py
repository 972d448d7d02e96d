"""`xbarforge export`: one network of a search front as a standalone model file plus its Mapping.

The model file records `{"space": name, "kwargs": ..., "arch": ...}` as its arch, so every command
that loads model files (simulate, quantize, train --init, finetune) rebuilds it without the supernet.
The Mapping beside it is what `compile_graph` gives on the search's chip and budget (for spaces
that choose crossbar sizes, the per-layer sizes and costs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xbarforge.errors import XbarforgeError
from xbarforge.report.jsonio import read_json, write_json
from xbarforge.search.run import CONFIG_FILE, FRONT_FILE, SearchConfig, SearchRun, pick_index


def export_pick(search_dir: Path, pick: str, out: Path) -> dict[str, Any]:
    """Write the picked sub-net to `out` (model file) and its mapping to `out` with .mapping.json."""
    from xbarforge.compiler.compile import compile_graph
    from xbarforge.search.supernet import recalibrate_bn
    from xbarforge.train.loop import evaluate
    from xbarforge.train.modelio import save_model

    front_file = search_dir / FRONT_FILE
    if not front_file.exists():
        raise XbarforgeError(f"export: {search_dir} has no {FRONT_FILE} (run `xbarforge search` there first)")
    doc = read_json(front_file)
    index = pick_index(doc, pick)
    point = doc["front"][index]
    cfg = SearchConfig.model_validate(read_json(search_dir / CONFIG_FILE))
    run = SearchRun(cfg, search_dir)
    space, arch = run.space, point["arch"]
    model = run.net.export(arch)  # type: ignore[operator]
    recalibrate_bn(model, run.data)
    val = evaluate(model, run.data, "val")["accuracy"]
    out.parent.mkdir(parents=True, exist_ok=True)
    mapping_file = out.with_suffix(".mapping.json")
    sizes = space.crossbar_sizes(arch)
    if sizes is None:
        mapping = compile_graph(space.layer_graph(arch), run.hw, crossbars=cfg.crossbars,
                                samples=sorted({1, cfg.samples}), objective="throughput")
        mapping.save(mapping_file)
    else:
        write_json(mapping_file, {"crossbar_sizes": sizes, "compiled": point["compiled"], "hardware": run.hw.name})
    c, h, w = space.input_shape
    meta = {**run.meta, "val_accuracy": val, "picked": pick, "front_index": index, "search": str(search_dir),
            "hardware": run.hw.name, "crossbars": cfg.crossbars, "mapping_file": str(mapping_file),
            "compiled": point["compiled"], "speedup": point.get("speedup"), "seed": run.meta.get("split_seed", 0)}
    save_model(out, model, arch={"space": space.name, "kwargs": {"resolution": h, "num_classes": space.num_classes,
                                                                  "in_channels": c}, "arch": arch}, meta=meta)
    return {"index": index, "describe": point["describe"], "val_accuracy": val, "mapping_file": str(mapping_file)}
