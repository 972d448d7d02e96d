"""What the search agents share: their result, their history records, best-so-far tracking, checkpoint
checks and the progress bar.

History records and checkpoints hold plain Python types only (numbers, strings, lists, dicts) and
tensors, so a checkpoint loads with `safe_load` (no code runs on load) and a record goes straight into
`json.dumps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from xbarforge.errors import XbarforgeError
from xbarforge.quant.problem import Evaluation, Problem
from xbarforge.report.progress import Tracker
from xbarforge.rundir import check_same_settings
from xbarforge.train.modelio import atomic_save, safe_load

Callback = Callable[[dict[str, Any]], None]

_DROP = object()  # marks a value that is not JSON-friendly


@dataclass
class AgentResult:
    """The best episode of a search and the whole search's history (one record per evaluated episode)."""

    best_actions: np.ndarray  # the repaired actions of the best episode (what was scored); empty before any
    best_reward: float  # -inf before any episode
    best_info: dict[str, Any]  # the JSON-friendly items of the best episode's Evaluation.info
    history: list[dict[str, Any]] = field(default_factory=list)


def _plain(value: Any) -> Any:
    """`value` as plain JSON-friendly Python (numpy scalars and arrays converted), or _DROP."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, np.generic):
        return _plain(value.item()) if isinstance(value, np.bool_ | np.integer | np.floating) else _DROP
    if isinstance(value, np.ndarray):
        return value.tolist() if value.dtype.kind in "biuf" else _DROP
    if isinstance(value, list | tuple):
        items = [_plain(v) for v in value]
        return _DROP if any(v is _DROP for v in items) else items
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            return _DROP
        out = {k: _plain(v) for k, v in value.items()}
        return _DROP if any(v is _DROP for v in out.values()) else out
    return _DROP


def json_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The items of an Evaluation.info that survive JSON and `safe_load` (others, like tensors, are left out)."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        plain = _plain(value)
        if isinstance(key, str) and plain is not _DROP:
            out[key] = plain
    return out


RESERVED = ("episode", "reward", "actions")


def check_problem(problem: Problem) -> tuple[int, np.ndarray]:
    """n_steps and the features as a float64 (n_steps, d) array; a malformed problem is a programming error."""
    n = int(problem.n_steps)
    feats = np.asarray(problem.features, dtype=np.float64)
    if n < 1:
        raise ValueError(f"a problem needs at least one step, got n_steps={n}")
    if feats.ndim != 2 or feats.shape[0] != n:
        raise ValueError(f"features must have shape (n_steps={n}, d), got {feats.shape}")
    return n, feats


def checked(evaluation: Evaluation, n_steps: int, episode: int) -> tuple[float, np.ndarray]:
    """The reward and the repaired actions of an evaluation, validated, so a bad problem fails loudly
    at the episode that went wrong rather than poisoning the search."""
    reward = float(evaluation.reward)
    if not math.isfinite(reward):
        raise ValueError(f"episode {episode}: the problem returned a non-finite reward ({reward})")
    acts = np.asarray(evaluation.actions, dtype=np.float64).reshape(-1)
    if acts.shape != (n_steps,):
        raise ValueError(f"episode {episode}: Evaluation.actions has {acts.size} entries, expected {n_steps}")
    if not np.all(np.isfinite(acts)):
        raise ValueError(f"episode {episode}: Evaluation.actions holds non-finite values")
    return reward, np.clip(acts, 0.0, 1.0)


def make_record(episode: int, reward: float, actions: np.ndarray, info: Mapping[str, Any],
                **extra: Any) -> dict[str, Any]:
    """One history record: episode (0-based), reward, agent extras, the JSON-friendly info items, then the
    repaired actions (last, since they are long); the record's own keys win over info keys of the same name."""
    rec: dict[str, Any] = {"episode": int(episode), "reward": float(reward), **extra}
    for key, value in json_info(info).items():
        if key not in rec and key != "actions":
            rec[key] = value
    rec["actions"] = [float(a) for a in actions]
    return rec


class Best:
    """Best-so-far tracking; the first episode wins ties, so the result does not depend on later equals."""

    def __init__(self) -> None:
        self.reward = -math.inf
        self.actions: list[float] = []
        self.info: dict[str, Any] = {}

    def update(self, record: Mapping[str, Any], info: Mapping[str, Any]) -> None:
        """Take `record` if it beats the best; `info` is its Evaluation.info (kept JSON-friendly)."""
        if record["reward"] > self.reward:
            self.reward = float(record["reward"])
            self.actions = list(record["actions"])
            self.info = {k: v for k, v in json_info(info).items() if k not in RESERVED}

    def state(self) -> dict[str, Any]:
        return {"reward": self.reward, "actions": self.actions, "info": self.info}

    def load(self, state: Mapping[str, Any]) -> None:
        self.reward, self.actions, self.info = float(state["reward"]), list(state["actions"]), dict(state["info"])

    def result(self, history: list[dict[str, Any]]) -> AgentResult:
        return AgentResult(np.asarray(self.actions, dtype=np.float64), self.reward, dict(self.info),
                           [dict(r) for r in history])


CHECKPOINT_FORMAT = "xbarforge-agent"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, config: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    """Write an agent checkpoint atomically: the format header, the run's config, then its state."""
    atomic_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": dict(config), **state}, path)


def load_checkpoint(path: Path, name: str, current: Mapping[str, Any]) -> dict[str, Any]:
    """Read an agent checkpoint of agent `name`, refusing other formats, versions and runs (one line each)."""
    ck = safe_load(path, "agent checkpoint")
    config = ck.get("config") if isinstance(ck, dict) else None
    if not isinstance(config, dict) or ck.get("format") != CHECKPOINT_FORMAT or config.get("agent") != name:
        raise XbarforgeError(f"{path} is not a {name} agent checkpoint")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise XbarforgeError(f"{path}: checkpoint version {ck.get('version')} is not supported"
                             f" (this xbarforge writes {CHECKPOINT_VERSION})")
    check_config(config, current, path)
    return ck


def check_config(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint written with other settings or for another problem: the run would
    silently stop being the run that was asked for."""
    check_same_settings(f"checkpoint {path}", saved, current, "delete it or pick another path")


class Progress:
    """Progress over episodes that shows the best reward (a bar on a terminal, plain lines
    elsewhere; nothing when disabled)."""

    def __init__(self, enabled: bool, total: int, done: int, label: str, best: float) -> None:
        self._tracker = Tracker(label, total, enabled=bool(enabled), completed=done,
                                describe=lambda f: f"best {self._fmt(f['best'])}", best=best)

    @staticmethod
    def _fmt(best: float) -> str:
        return "-" if not math.isfinite(best) else f"{best:.4f}"

    def __enter__(self) -> Progress:
        self._tracker.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._tracker.stop()

    def advance(self, best: float) -> None:
        self._tracker.update(advance=1, best=best)
