"""Evolutionary search agent: pymoo's single-objective genetic algorithm over the action vector.

An individual is a whole episode's actions, x in [0, 1]^n_steps. pymoo's ask-and-tell interface lets
the agent, not pymoo, call the problem, so every individual is scored exactly once; the actions the
problem actually scored (after its budget enforcement) are written back into the individuals before
they are told, so the population breeds from what was scored. pymoo minimizes, so F = -reward.

Checkpoints hold no pymoo objects. pymoo's GA cannot be pickled (its default tournament comparator is
wrapped by a decorator that returns a local function), and unpickling would run code on load anyway.
Instead a checkpoint holds the history, and resuming replays it: a fresh GA with the same seed is asked
for each generation again (pymoo 0.6.2 draws all its randomness from `np.random.default_rng(seed)`
made in `setup`), told the recorded scores, and checked against a digest of every generation it asked
for, so a replay that would diverge (another pymoo version, say) fails loudly instead of silently.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from pymoo.algorithms.soo.nonconvex.ga import GA
from pymoo.core.population import Population
from pymoo.core.problem import Problem as PymooProblem
from pymoo.core.termination import NoTermination
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.sampling.rnd import FloatRandomSampling

from xbarforge.errors import XbarforgeError
from xbarforge.quant.agents.base import (
    AgentResult,
    Best,
    Callback,
    Progress,
    check_problem,
    checked,
    load_checkpoint,
    make_record,
    save_checkpoint,
)
from xbarforge.quant.problem import Problem


class _ActionBox(PymooProblem):
    """The search space [0, 1]^n for pymoo; it never evaluates anything (the agent does, then tells)."""

    def __init__(self, n_var: int) -> None:
        super().__init__(n_var=n_var, n_obj=1, xl=0.0, xu=1.0)

    def _evaluate(self, x: Any, out: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("EvolutionAgent evaluates individuals itself (ask and tell)")


def _digest(pop: Population) -> str:
    return hashlib.sha256(np.ascontiguousarray(pop.get("X"), dtype=np.float64).tobytes()).hexdigest()


class EvolutionAgent:
    """A genetic algorithm (pymoo GA: tournament selection, SBX crossover, polynomial mutation, duplicate
    elimination) over a `Problem`; `population` individuals per generation, one episode per individual."""

    name = "evolution"

    def __init__(
        self,
        problem: Problem,
        *,
        seed: int = 0,
        population: int = 20,
        crossover_eta: float = 15.0,
        mutation_eta: float = 20.0,
    ) -> None:
        self.problem = problem
        self.n_steps, self._features = check_problem(problem)
        if population < 2:
            raise XbarforgeError(f"evolution: population must be >= 2, got {population}")
        if crossover_eta <= 1 or mutation_eta <= 1:
            raise XbarforgeError("evolution: crossover_eta and mutation_eta must be > 1")
        self.seed = int(seed)
        self.population = int(population)
        self.crossover_eta, self.mutation_eta = float(crossover_eta), float(mutation_eta)
        self._reset()

    def _reset(self) -> None:
        self._alg = self._new_algorithm()
        self._pending: Population | None = None  # the generation asked for and not yet told
        self._told = 0  # history records already told to pymoo (the pending generation's follow)
        self._digests: list[str] = []  # one per generation asked for
        self._exhausted = False  # pymoo could not breed new (non-duplicate) offspring
        self._history: list[dict[str, Any]] = []
        self._best = Best()

    def _new_algorithm(self) -> GA:
        # fresh operator objects: GA's defaults are instances shared by every GA (default arguments)
        alg = GA(pop_size=self.population, sampling=FloatRandomSampling(), crossover=SBX(eta=self.crossover_eta),
                 mutation=PM(eta=self.mutation_eta), eliminate_duplicates=True)
        # the seed must be an int: pymoo's seed=None means fresh OS entropy, i.e. an irreproducible run
        alg.setup(_ActionBox(self.n_steps), termination=NoTermination(), seed=self.seed)
        return alg

    # ---- public ----

    @property
    def episodes_done(self) -> int:
        return len(self._history)

    def result(self) -> AgentResult:
        """The search so far."""
        return self._best.result(self._history)

    def run(self, episodes: int, *, checkpoint: str | Path | None = None, callback: Callback | None = None,
            progress: bool = False) -> AgentResult:
        """Evaluate individuals until `episodes` are done in total (ceil(episodes / population) generations;
        a generation cut short by `episodes` is finished first when a later call asks for more, so runs split
        anywhere equal one uninterrupted run). Resumes from `checkpoint` when it exists and this agent has not
        run yet; checkpoints after every individual; `callback` gets each new history record. Stops early only
        if pymoo can breed no new individual."""
        if episodes < 0:
            raise XbarforgeError(f"episodes must be >= 0, got {episodes}")
        path = None if checkpoint is None else Path(checkpoint).expanduser()
        if path is not None and path.exists() and not self._history:
            self._load(path)
        todo = episodes > len(self._history) and not self._exhausted
        with Progress(progress and todo, episodes, len(self._history), self.name, self._best.reward) as bar:
            while len(self._history) < episodes and not self._exhausted:
                if self._pending is None and not self._ask():
                    if path is not None:
                        self._save(path)  # so a resumed run stops here too
                    break
                record = self._evaluate_next()
                if path is not None:
                    self._save(path)
                if callback is not None:
                    callback(dict(record))
                bar.advance(self._best.reward)
        return self.result()

    # ---- ask, evaluate, tell ----

    def _ask(self) -> bool:
        """Ask pymoo for the next generation; False when it can breed none."""
        pop = self._alg.ask()
        if pop is None or len(pop) == 0:
            self._exhausted = True
            return False
        self._pending = pop
        self._digests.append(_digest(pop))
        return True

    def _evaluate_next(self) -> dict[str, Any]:
        assert self._pending is not None
        episode = len(self._history)
        i = episode - self._told
        proposed = np.clip(np.asarray(self._pending[i].X, dtype=np.float64), 0.0, 1.0)
        evaluation = self.problem.evaluate(proposed.copy())
        reward, scored = checked(evaluation, self.n_steps, episode)
        record = make_record(episode, reward, scored, evaluation.info, generation=len(self._digests) - 1)
        self._history.append(record)
        self._best.update(record, evaluation.info)
        if i + 1 == len(self._pending):
            self._tell()
        return record

    def _tell(self) -> None:
        """Tell pymoo the pending generation's scores, with X replaced by the actions that were scored. Both
        come from the history records, so a replayed run tells pymoo exactly the same numbers."""
        pop = self._pending
        assert pop is not None
        records = self._history[self._told:self._told + len(pop)]
        pop.set("X", np.array([r["actions"] for r in records], dtype=np.float64))
        pop.set("F", -np.array([[r["reward"]] for r in records], dtype=np.float64))
        for ind in pop:
            ind.evaluated.update({"F", "G", "H"})
        self._alg.tell(infills=pop)
        self._told += len(pop)
        self._pending = None

    # ---- checkpoints ----

    def _config(self) -> dict[str, Any]:
        """What must match for a checkpoint to continue this very run."""
        return {
            "agent": self.name, "seed": self.seed, "population": self.population,
            "crossover_eta": self.crossover_eta, "mutation_eta": self.mutation_eta, "n_steps": self.n_steps,
            "features": self._features.tolist(),
        }

    def _save(self, path: Path) -> None:
        save_checkpoint(path, self._config(), {
            "history": self._history, "best": self._best.state(), "digests": self._digests,
            "exhausted": self._exhausted,
        })

    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path, self.name, self._config())
        self._reset()
        self._history = [dict(r) for r in ck["history"]]
        for digest in ck["digests"]:  # replay: ask each generation again and tell it the recorded scores
            if not self._ask() or self._digests[-1] != digest:
                self._reset()
                raise XbarforgeError(f"{path}: replaying the checkpoint's generations gave another population"
                                     " than the one recorded; the search cannot resume exactly")
            assert self._pending is not None
            if len(self._history) - self._told >= len(self._pending):
                self._tell()
        if self._pending is None and self._told != len(self._history):
            self._reset()
            raise XbarforgeError(f"{path}: the checkpoint's history does not fit its generations")
        self._exhausted = bool(ck["exhausted"])
        self._best.load(ck["best"])
