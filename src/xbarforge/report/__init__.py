"""Reports of a compile result: rich tables (`table`), PNG plots (`plots`) and JSON (`jsonio`).

`plots` imports matplotlib, so it is not imported here; use `from xbarforge.report import plots`.
"""

from xbarforge.report.jsonio import read_json, to_jsonable, write_json
from xbarforge.report.table import layer_table, list_table, render_report, summary_panel

__all__ = [
    "layer_table",
    "list_table",
    "read_json",
    "render_report",
    "summary_panel",
    "to_jsonable",
    "write_json",
]
