"""NSGA-II over integer genomes (pymoo), driven by ask-and-tell so that the engine, not pymoo, evaluates.

Why ask-and-tell: a genome seen before is never evaluated twice (NSGA-II revisits genomes often), a whole
generation's new genomes go to the back-end in one `map` call (that is what runs in parallel), and every
evaluation is logged as it is told.

Checkpoints hold no pymoo objects (pymoo algorithms cannot be pickled reliably). `out_dir` holds
`state.json` (what must match to resume, and a digest of every generation pymoo asked for),
`candidates.jsonl` (every evaluation, appended) and `front.json`. Resuming rebuilds NSGA-II with the same
seed and replays the saved generations from the log: pymoo 0.6.2 draws all its randomness from the
generator it makes in `setup`, so it asks for the same genomes again, which the digests confirm. A resumed
run therefore equals an uninterrupted one, log and front alike.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem as PymooProblem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM

from xbarforge.errors import XbarforgeError
from xbarforge.report.progress import Tracker
from xbarforge.rundir import check_same_settings
from xbarforge.search.backends import Backend, LocalBackend

STATE_FILE = "state.json"
CANDIDATES_FILE = "candidates.jsonl"
FRONT_FILE = "front.json"
SCHEMA = 1

# operator settings: a wide distribution (eta 3) suits genes with a handful of values; part of the state
CROSSOVER = {"prob": 0.9, "eta": 3.0}
MUTATION = {"prob": 1.0, "eta": 3.0}


@dataclass(frozen=True)
class Objective:
    """One objective and whether smaller ("min") or larger ("max") is better."""

    name: str
    sense: Literal["min", "max"]


@dataclass
class Evaluated:
    """What an evaluate function returns for one genome (JSON-able). `values` holds every objective and any
    extra metric worth logging; an infeasible candidate says why (`reason`) and how far (`violation` > 0,
    which pymoo uses to rank infeasible candidates against each other)."""

    genome: list[int]
    values: dict[str, float]
    feasible: bool = True
    reason: str | None = None
    violation: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.genome = [int(g) for g in self.genome]
        self.values = {str(k): float(v) for k, v in self.values.items()}
        self.feasible = bool(self.feasible)
        self.violation = float(self.violation)
        if not self.feasible and not self.violation > 0:
            self.violation = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"genome": list(self.genome), "values": dict(self.values), "feasible": self.feasible,
                "reason": self.reason, "violation": self.violation, "info": self.info}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Evaluated:
        return cls(genome=list(d["genome"]), values=dict(d["values"]), feasible=bool(d.get("feasible", True)),
                   reason=d.get("reason"), violation=float(d.get("violation", 0.0)), info=dict(d.get("info") or {}))


@dataclass
class SearchResult:
    """`front`: feasible and non-dominated over every candidate evaluated, ascending in the first objective's
    value; `evaluated`: every distinct genome in evaluation order; `generations`: generations done (fewer
    than asked only when pymoo could breed no new genome)."""

    front: list[Evaluated]
    evaluated: list[Evaluated]
    generations: int
    seconds: float


# ---- Pareto front ----

def _matrix(items: Sequence[Evaluated], objectives: Sequence[Objective]) -> np.ndarray:
    """Objective values as a minimization matrix ("max" objectives negated)."""
    rows = []
    for e in items:
        row = []
        for o in objectives:
            v = e.values.get(o.name)
            if v is None or math.isnan(v):
                raise XbarforgeError(f"candidate {e.genome} has no value for objective {o.name!r}")
            row.append(-v if o.sense == "max" else v)
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(objectives))


def pareto_front(items: Sequence[Evaluated], objectives: Sequence[Objective]) -> list[Evaluated]:
    """The feasible items that no other feasible item dominates (as good in every objective, better in one).
    Items with equal values do not dominate each other, so all of them stay. Sorted ascending by the first
    objective's value, then the others, then the genome, so the order is reproducible."""
    feasible = [e for e in items if e.feasible]
    if not feasible or not objectives:
        return list(feasible) if not objectives else []
    f = _matrix(feasible, objectives)
    dominated = np.zeros(len(feasible), dtype=bool)
    for start in range(0, len(feasible), 256):  # blocks keep memory at 256 x n x k
        a = f[start:start + 256, None, :]  # candidate dominators
        dom = np.all(a <= f[None, :, :], axis=2) & np.any(a < f[None, :, :], axis=2)
        dominated |= dom.any(axis=0)
    keep = [e for e, d in zip(feasible, dominated, strict=True) if not d]
    return sorted(keep, key=lambda e: ([e.values[o.name] for o in objectives], e.genome))


# ---- pymoo glue ----

class _Genomes(PymooProblem):
    """Integer genes, gene i in [0, cardinalities[i] - 1]; one inequality constraint G = violation (feasible:
    0). It never evaluates anything: the engine does, then tells.

    pymoo's operators see gene i as a real in [-0.5, cardinalities[i] - 0.5] that `_RoundClip` rounds, so
    every value, the end ones included, owns an interval of the same width (bounds [0, c - 1] would give the
    two end values half the chance of the others after rounding)."""

    def __init__(self, cardinalities: Sequence[int], n_obj: int) -> None:
        cards = np.asarray(cardinalities, dtype=np.float64)
        super().__init__(n_var=len(cards), n_obj=n_obj, n_ieq_constr=1, xl=np.full(len(cards), -0.5),
                         xu=cards - 0.5, vtype=int)
        self.top = cards.astype(np.int64) - 1

    def _evaluate(self, x: Any, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("run_nsga2 evaluates genomes itself (ask and tell)")


class _RoundClip(Repair):
    """Round half up and clip into [0, c - 1]: the operators' reals back to genes."""

    def _do(self, problem: Any, X: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        return np.clip(np.floor(np.asarray(X, dtype=np.float64) + 0.5), 0, problem.top).astype(np.int64)


class _SeededSampling(Sampling):
    """The first population: the `initial` genomes, then distinct random ones (the whole space when it is
    smaller than the population). Draws come from pymoo's generator, so they follow the seed."""

    def __init__(self, cardinalities: Sequence[int], initial: list[tuple[int, ...]]) -> None:
        super().__init__()
        self.cards = np.asarray(cardinalities, dtype=np.int64)
        self.initial = initial

    def _do(self, problem: Any, n_samples: int, *args: Any, random_state: Any = None, **kwargs: Any) -> np.ndarray:
        rows = list(dict.fromkeys(self.initial))[:n_samples]
        seen = set(rows)
        size = math.prod(int(c) for c in self.cards)
        if size <= n_samples:  # tiny space: take all of it, in a fixed order
            rows += [g for g in itertools.product(*(range(int(c)) for c in self.cards)) if g not in seen]
        else:
            for _ in range(100):  # distinct draws; a space larger than n_samples fills quickly
                if len(rows) >= n_samples:
                    break
                draws = random_state.integers(0, self.cards, size=(n_samples, len(self.cards)))
                for d in map(tuple, draws.tolist()):
                    if d not in seen and len(rows) < n_samples:
                        seen.add(d)
                        rows.append(d)
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(self.cards))


def _new_algorithm(cardinalities: Sequence[int], n_obj: int, population: int, seed: int,
                   initial: list[tuple[int, ...]]) -> NSGA2:
    alg = NSGA2(pop_size=population, sampling=_SeededSampling(cardinalities, initial),
                crossover=SBX(**CROSSOVER, vtype=float, repair=_RoundClip()),
                mutation=PM(**MUTATION, vtype=float, repair=_RoundClip()), eliminate_duplicates=True)
    alg.setup(_Genomes(cardinalities, n_obj), termination=NoTermination(), seed=int(seed))
    return alg


def _genome_matrix(pop: Any) -> np.ndarray:
    return np.rint(np.asarray(pop.get("X"), dtype=np.float64)).astype(np.int64)


def _digest(x: np.ndarray) -> str:
    h = hashlib.sha256(repr(x.shape).encode())
    h.update(np.ascontiguousarray(x, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


# ---- files ----

def _write_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _line(generation: int, e: Evaluated) -> str:
    return json.dumps({"generation": generation, **e.to_json()}, default=_jsonable)


def _jsonable(x: Any) -> Any:
    """numpy scalars and arrays, tuples and sets in `info` become JSON; anything else its str()."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray | set | frozenset):
        return list(x.tolist() if isinstance(x, np.ndarray) else x)
    return str(x)


class _Log:
    """The checkpoint folder: state.json and front.json rewritten atomically, candidates.jsonl appended."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self.state_path = out_dir / STATE_FILE
        self.cand_path = out_dir / CANDIDATES_FILE
        self.front_path = out_dir / FRONT_FILE
        self._fh: Any = None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fh = self.cand_path.open("a", encoding="utf-8")

    def append(self, lines: list[str]) -> None:
        if lines:
            self._fh.write("".join(line + "\n" for line in lines))
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def load_candidates(self) -> list[dict[str, Any]]:
        """Every complete line; a torn last line (a kill mid-write) is dropped, a bad line elsewhere is not."""
        if not self.cand_path.exists():
            return []
        lines = self.cand_path.read_text(encoding="utf-8").split("\n")
        out = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i >= len(lines) - 2 and not any(rest.strip() for rest in lines[i + 1:]):
                    break  # the torn last line
                raise XbarforgeError(f"{self.cand_path}: line {i + 1} is not valid JSON; the log is damaged"
                                     ) from None
        return out

    def rewrite_candidates(self, lines: list[str]) -> None:
        tmp = self.cand_path.with_name(self.cand_path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, self.cand_path)


# ---- the engine ----

def _check_inputs(cardinalities: Sequence[int], objectives: Sequence[Objective], population: int,
                  generations: int) -> None:
    if len(cardinalities) == 0:
        raise XbarforgeError("nsga2: the search space has no genes (empty cardinalities)")
    bad = [c for c in cardinalities if int(c) != c or c < 1]
    if bad:
        raise XbarforgeError(f"nsga2: every gene needs a cardinality >= 1, got {bad[0]}")
    if population < 2:
        raise XbarforgeError(f"nsga2: population must be >= 2, got {population}")
    if generations < 1:
        raise XbarforgeError(f"nsga2: generations must be >= 1, got {generations}")
    if not objectives:
        raise XbarforgeError("nsga2: give at least one objective")
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise XbarforgeError(f"nsga2: objective names repeat: {', '.join(names)}")
    for o in objectives:
        if o.sense not in ("min", "max"):
            raise XbarforgeError(f"nsga2: objective {o.name!r} has sense {o.sense!r}; use 'min' or 'max'")


def _check_genome(genome: Sequence[int], cards: Sequence[int], what: str) -> tuple[int, ...]:
    g = tuple(int(x) for x in genome)
    if len(g) != len(cards) or any(not 0 <= x < c for x, c in zip(g, cards, strict=True)):
        raise XbarforgeError(f"nsga2: {what} {list(g)} does not fit the cardinalities {list(cards)}")
    return g


def _progress(enabled: bool, total: int) -> Tracker:
    return Tracker("nsga2 generation", total, enabled=enabled,
                   describe=lambda f: f"evaluated {f['evaluated']}  front {f['front']}", evaluated=0, front=0)


def run_nsga2(cardinalities: Sequence[int], evaluate: Callable[[list[int]], Evaluated],
              objectives: Sequence[Objective], *, population: int = 50, generations: int = 60, seed: int = 0,
              out_dir: str | Path | None = None, resume: bool = False, backend: Backend | None = None,
              initial: Sequence[Sequence[int]] = (), progress: bool = True,
              settings: Mapping[str, Any] | None = None) -> SearchResult:
    """Search for the Pareto front of `objectives` over integer genomes with NSGA-II.

    Generation 0 is the first population (`initial` genomes, then random ones); each later generation is
    one batch of offspring. `evaluate` runs once per distinct genome, on `backend` (default: this process),
    and must be deterministic for runs to be reproducible. With `out_dir` every generation is checkpointed;
    `resume=True` continues a saved run (same seed, population, cardinalities, objectives, initial genomes
    and `settings`) up to `generations`, replaying the saved generations without evaluating anything. A
    saved run with more generations than asked is replayed in full and not shortened."""
    t0 = time.perf_counter()
    cards = [int(c) for c in cardinalities]
    objectives = list(objectives)
    _check_inputs(cards, objectives, population, generations)
    init = [_check_genome(g, cards, "initial genome") for g in initial]
    settings_doc = json.loads(json.dumps(dict(settings or {}), sort_keys=True, default=str))
    config = {"seed": int(seed), "population": int(population), "cardinalities": cards,
              "objectives": [[o.name, o.sense] for o in objectives], "initial": [list(g) for g in init],
              "operators": {"crossover": CROSSOVER, "mutation": MUTATION}, "settings": settings_doc}

    log = _Log(Path(out_dir).expanduser()) if out_dir is not None else None
    digests: list[str] = []  # saved digests, one per generation done
    counts: list[int] = []  # evaluations per generation done
    history: list[dict[str, Any]] = []  # log records of the generations done
    salvage: dict[tuple[int, ...], dict[str, Any]] = {}  # logged in a generation whose state was never saved
    exhausted = False
    if log is not None and log.state_path.exists():
        if not resume:
            raise XbarforgeError(f"{log.dir} already holds a search: pass resume to continue it or use another"
                                 " folder")
        state = json.loads(log.state_path.read_text(encoding="utf-8"))
        if state.get("schema") != SCHEMA:
            raise XbarforgeError(f"{log.state_path}: unknown checkpoint schema {state.get('schema')!r}")
        check_same_settings(log.dir, state["config"], config, "pass the same ones or use another folder")
        digests, counts = list(state["digests"]), list(state["counts"])
        exhausted = bool(state.get("exhausted", False))
        records = log.load_candidates()
        done = len(digests)
        history = [r for r in records if r["generation"] < done]
        salvage = {tuple(r["genome"]): r for r in records if r["generation"] == done}
        if len(history) != sum(counts) or [r["generation"] for r in history] != sorted(
                r["generation"] for r in history):
            raise XbarforgeError(f"{log.cand_path} does not match {STATE_FILE} ({len(history)} evaluations"
                                 f" logged for {done} generations, {sum(counts)} expected); cannot resume")
        if len(history) != len(records):  # drop a torn line or a generation never finished
            log.rewrite_candidates([_line(r["generation"], Evaluated.from_json(r)) for r in history])
    elif log is not None and log.cand_path.exists():
        log.cand_path.unlink()  # stale log of a run that never saved a state

    cache: dict[tuple[int, ...], Evaluated] = {}
    for r in history:
        cache[tuple(r["genome"])] = Evaluated.from_json(r)
    backend = backend if backend is not None else LocalBackend()
    n_obj = len(objectives)
    sign = np.array([-1.0 if o.sense == "max" else 1.0 for o in objectives])
    alg = _new_algorithm(cards, n_obj, population, seed, init)
    front: list[Evaluated] = pareto_front(list(cache.values()), objectives)
    target = max(generations, len(digests))

    def save_state() -> None:
        assert log is not None
        _write_atomic(log.state_path, {"schema": SCHEMA, "config": config, "digests": digests, "counts": counts,
                                       "exhausted": exhausted, "evaluated": len(cache), "front": len(front)})
        _write_atomic(log.front_path, {"objectives": config["objectives"], "generations": len(digests),
                                       "evaluated": len(cache), "front": [e.to_json() for e in front]})

    def tell(pop: Any, x: np.ndarray) -> None:
        f = np.zeros((len(x), n_obj))
        g = np.zeros((len(x), 1))
        for i, row in enumerate(map(tuple, x.tolist())):
            e = cache[row]
            if e.feasible:
                f[i] = sign * _matrix([e], objectives)[0]
            else:  # pymoo ranks infeasible candidates by violation; their values only break ties
                f[i] = [sign[j] * _finite(e.values.get(o.name)) for j, o in enumerate(objectives)]
                g[i, 0] = e.violation
        pop.set("X", x)
        pop.set("F", f)
        pop.set("G", g)
        for ind in pop:
            ind.evaluated.update({"F", "G", "H"})
        alg.tell(infills=pop)

    saved_done = len(digests)
    where = str(log.dir) if log is not None else "nsga2"
    if log is not None:
        log.start()
        if saved_done == 0:
            save_state()  # so even a run killed in generation 0 resumes with its settings checked
    try:
        with _progress(progress, target) as bar:
            gen = 0
            while gen < target and not (exhausted and gen >= saved_done):
                pop = alg.ask()
                replaying = gen < saved_done
                if pop is None or len(pop) == 0:
                    if replaying:
                        raise XbarforgeError(f"{where}: replaying generation {gen} bred no genome"
                                             " but the saved run did; the search cannot resume exactly")
                    exhausted = True
                    if log is not None:
                        save_state()
                    break
                x = _genome_matrix(pop)
                digest = _digest(x)
                if replaying:
                    if digest != digests[gen]:
                        raise XbarforgeError(f"{where}: replaying generation {gen} gave other"
                                             " genomes than the saved run (another pymoo version?); the search"
                                             " cannot resume exactly")
                    missing = [r for r in map(tuple, x.tolist()) if r not in cache]
                    if missing:
                        raise XbarforgeError(f"{where}: generation {gen} needs genome"
                                             f" {list(missing[0])}, which {CANDIDATES_FILE} lacks")
                else:
                    new = list(dict.fromkeys(r for r in map(tuple, x.tolist()) if r not in cache))
                    todo = [r for r in new if r not in salvage]
                    results = backend.map(evaluate, [list(r) for r in todo]) if todo else []
                    if len(results) != len(todo):
                        raise RuntimeError(f"back-end {backend.name!r} returned {len(results)} results for"
                                           f" {len(todo)} genomes")
                    got = dict(zip(todo, results, strict=True))
                    lines = []
                    for r in new:
                        e = Evaluated.from_json(salvage.pop(r)) if r in salvage else got[r]
                        if not isinstance(e, Evaluated):
                            raise TypeError(f"evaluate must return an Evaluated, got {type(e).__name__}")
                        if e.feasible:
                            _matrix([e], objectives)  # every objective present: fail here, not in pymoo
                        line = _line(gen, replace(e, genome=list(r)))
                        lines.append(line)
                        cache[r] = Evaluated.from_json(json.loads(line))  # as a resumed run would read it back
                    front = pareto_front(front + [cache[r] for r in new], objectives)
                    digests.append(digest)
                    counts.append(len(new))
                    if log is not None:
                        log.append(lines)
                tell(pop, x)
                gen += 1
                if gen == saved_done + 1:
                    salvage.clear()  # only the generation whose state was never saved can use it
                if log is not None and not replaying:
                    save_state()
                bar.update(completed=gen, evaluated=len(cache), front=len(front))
    finally:
        if log is not None:
            log.close()
    return SearchResult(front=front, evaluated=list(cache.values()), generations=len(digests),
                        seconds=time.perf_counter() - t0)


def _finite(v: float | None) -> float:
    return 0.0 if v is None or not math.isfinite(v) else float(v)
