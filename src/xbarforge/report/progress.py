"""Progress for long commands, on a terminal and off it.

rich's live bars redraw in place, which works only on a terminal: written to a file, a CI log or
through nohup they show nothing until the end, and a user cannot tell a hang from work. `Tracker`
draws a rich bar on a terminal and otherwise prints plain timestamped lines (what, how far, elapsed,
ETA and the task's own figures) when it starts, at most every `every_s` seconds, and when it ends.

    with Tracker("train epoch 3/10", total=782, describe=lambda f: f"loss {f['loss']:.3f}") as bar:
        for step in ...:
            bar.update(advance=1, loss=loss)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

from rich.console import Console

PLAIN_EVERY_S = 10.0  # seconds between plain progress lines


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Tracker:
    """A progress display over `total` steps: a rich bar on a terminal, plain lines elsewhere.

    `describe(fields)` renders the task's figures (loss, best reward, ...) for both. Disabled, it
    does nothing. Plain lines go to the console's file (stdout unless the console says otherwise).
    """

    def __init__(self, label: str, total: int | None, *, console: Console | None = None, enabled: bool = True,
                 describe: Callable[[dict[str, Any]], str] | None = None, completed: int = 0,
                 every_s: float = PLAIN_EVERY_S, transient: bool = False, **fields: Any) -> None:
        self.label, self.total, self.enabled = label, total, enabled
        self.console = console or Console(highlight=False)
        self.describe = describe or (lambda f: "")
        self.fields: dict[str, Any] = dict(fields)
        self.completed = completed
        self.every_s = every_s
        self.transient = transient
        self.plain = not self.console.is_terminal
        self._bar: Any = None
        self._task: Any = None
        self._t0 = time.monotonic()
        self._start_done = completed
        self._last_line = -float("inf")

    # ---- the two displays ----

    def _text(self) -> str:
        try:
            return self.describe(self.fields)
        except (KeyError, TypeError, ValueError):
            return ""

    def _line(self, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._t0
        parts = [f"[{time.strftime('%H:%M:%S')}] {self.label}:"]
        if self.total:
            parts.append(f"{self.completed}/{self.total} ({100 * self.completed / self.total:.0f}%)")
        else:
            parts.append(f"{self.completed}")
        parts.append(f"elapsed {_clock(elapsed)}")
        done_here = self.completed - self._start_done
        if self.total and not final and done_here > 0 and self.completed < self.total:
            parts.append(f"ETA {_clock(elapsed / done_here * (self.total - self.completed))}")
        text = self._text()
        line = " ".join(parts) + (f"  {text}" if text else "") + (" done" if final else "")
        out: IO[str] = self.console.file if self.console.file is not None else sys.stdout
        print(line, file=out, flush=True)
        self._last_line = now

    def start(self) -> Tracker:
        if not self.enabled:
            return self
        self._t0 = time.monotonic()
        if self.plain:
            self._line()
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(TextColumn(self.label), BarColumn(bar_width=30), MofNCompleteColumn(),
                             TextColumn("{task.fields[text]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=self.console, transient=self.transient)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, completed=self.completed, text=self._text())
        return self

    def update(self, completed: int | None = None, advance: int = 0, **fields: Any) -> None:
        """Move to `completed` (or by `advance`) and set the task's figures."""
        if not self.enabled:
            return
        self.completed = completed if completed is not None else self.completed + advance
        self.fields.update(fields)
        if self.plain:
            if time.monotonic() - self._last_line >= self.every_s:
                self._line()
        elif self._bar is not None:
            self._bar.update(self._task, completed=self.completed, text=self._text())

    def stop(self) -> None:
        if not self.enabled:
            return
        if self.plain:
            self._line(final=True)
        elif self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
