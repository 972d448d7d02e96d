"""Discrete-event simulation of a Mapping's execution (SimPy), to check the analytic latency model.

Every (sample i, MVM layer l) is a job of T_l = `LayerPlan.cycles` cycles. A job starts when

* the same sample has finished the layer's dependencies (chain: the previous MVM layer of the
  round; dag: its MVM predecessors in the round),
* the same layer has finished sample i-1 (a layer works on one sample at a time),
* it holds every crossbar that stores a block of the layer (SimPy Resources of capacity 1,
  requested in increasing crossbar id so that no two jobs deadlock; FIFO on each crossbar),
* and, in ``mode="static"``, the analytic model's schedule for this k releases it
  (`RoundTiming.schedule_for(k)`):

  - ``sequential``: sample i is released once sample i-1 has left the network (k * L_1);
  - ``periodic``: at ``S_l + i*P`` (`RoundTiming.best_schedule(k)`);
  - ``batched``: once every earlier layer sharing a crossbar with l has finished all k samples;
  - ``ordered``: once the job before it in `RoundTiming.job_order(k)` on each of its crossbars
    has finished;
  - ``pipelined`` (no crossbar shared in the round): no rule beyond dependencies.

``mode="asap"`` drops the release rules: jobs start as soon as dependencies and crossbars allow.

Rounds (reprogramming) run one after another: all k samples through round 0, then round 1, ...,
each after its crossbars are written (`Mapping.write_cycles`), as in `xbarforge.cost.latency`. A
layer runs in every round that holds one of its blocks (a layer split over two rounds runs its part
in each, with that part's turns) and needs the crossbars of its blocks in that round.

Only crossbars that can ever make a job wait become Resources (`_contended`): not one private to
a layer, nor one whose layers all use a lower-id crossbar too. This keeps the simulation small and
changes no outcome (up to the order of events at one instant). Times are integers (MVM cycles).

In static mode a correct analytic model is reproduced exactly, with zero crossbar waiting except
where one sample's parallel DAG branches take turns on a shared crossbar in a "sequential" round.
Any other wait means two windows overlap on a crossbar and the analytic latency is optimistic.
For ``batched`` and ``ordered`` the release rules already serialize the crossbars, so there the
replay checks the analytic recurrence itself.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import simpy

from xbarforge.compiler.mapping import Mapping
from xbarforge.cost.latency import RoundTiming, Timing, mapping_timing, round_layers

MODES = ("static", "asap")
SCHEDULES = ("sequential", "periodic", "batched", "ordered", "pipelined")


@dataclass
class SimResult:
    """Outcome of one simulation (all times in MVM cycles)."""

    cycles: int  # finish time of the last job (rounds one after another)
    crossbar_wait_cycles: int  # total time jobs waited for crossbars after they were released
    jobs: int
    mode: str = "static"
    k: int = 1
    schedule: str = "chain"
    round_schedules: list[str] = field(default_factory=list)  # static plan per round ("asap" in asap mode)
    round_cycles: list[int] = field(default_factory=list)  # duration of each round
    round_wait: list[int] = field(default_factory=list)  # crossbar waiting in each round
    layer_finish: dict[str, int] = field(default_factory=dict)  # when each layer finished sample k-1 (last round)
    layer_wait: dict[str, int] = field(default_factory=dict)  # crossbar waiting per layer (nonzero only)


@dataclass
class _Round:
    layers: list[str]
    cycles: dict[str, int]
    deps: dict[str, list[str]]
    shared: dict[str, list[int]]  # crossbars (Resources) the layer requests, in increasing id
    ticks_per_cycle: int = 1  # times are ticks (`RoundLayers.ticks_per_cycle`)


@dataclass
class _Plan:
    """How static mode releases the jobs of one round."""

    kind: str  # one of SCHEDULES, or "asap"
    period: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    order: list[tuple[int, int]] = field(default_factory=list)  # (sample, layer index), "ordered"


def _rounds(mapping: Mapping, schedule: str) -> list[_Round]:
    """Layers, times, dependencies and contended crossbars of every round, as the latency model reads
    them (`round_layers`): a layer runs in every round that holds one of its blocks, on that round's
    crossbars; a run's private crossbars stand as one id (nobody else can wait for them)."""
    out = []
    for rl in round_layers(mapping):
        names = rl.names
        in_round = set(names)
        if schedule == "chain":
            deps = {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}
        else:
            deps = {n: [p for p in rl.preds.get(n, []) if p in in_round] for n in names}
        users: dict[int, list[str]] = defaultdict(list)
        for n in names:
            for x in rl.crossbars[n]:
                users[x].append(n)
        shared: dict[str, list[int]] = {n: [] for n in names}
        for x in _contended(users):
            for n in users[x]:
                shared[n].append(x)
        out.append(_Round(names, dict(rl.cycles), deps, shared, rl.ticks_per_cycle))
    return out


def _contended(users: dict[int, list[str]]) -> list[int]:
    """Crossbars that can make a job wait when every job requests its crossbars in increasing id.

    A crossbar used by one layer cannot: that layer's jobs run one after another. Nor can crossbar
    x when a lower-id crossbar y is used by every layer that uses x: whoever holds x took y first
    and still holds it, so a job that holds y finds x free. Leaving these out changes no outcome.
    """
    kept: list[tuple[int, frozenset[str]]] = []
    for x in sorted(users):
        who = frozenset(users[x])
        if len(who) > 1 and not any(who <= other for _, other in kept):
            kept.append((x, who))
    return [x for x, _ in kept]


def _plan(rt: RoundTiming, k: int) -> _Plan:
    """The static schedule the analytic model uses for k samples in this round."""
    kind = rt.schedule_for(k)
    if kind == "periodic":
        sched = rt.best_schedule(k)
        if sched is None:
            raise ValueError("analytic model chose 'periodic' but best_schedule gives none")
        return _Plan(kind, period=sched[0], offsets=dict(sched[1]))
    if kind == "ordered":
        return _Plan(kind, order=list(rt.job_order(k)))
    if kind not in SCHEDULES:
        raise ValueError(f"unknown analytic schedule {kind!r}")
    return _Plan(kind)


class _Sim:
    """One SimPy environment running the rounds of a mapping one after another."""

    def __init__(self, k: int, writes: list[int] | None = None) -> None:
        self.env = simpy.Environment()
        self.k = k
        self.writes = writes or []  # write cycles before each round (reprogramming)
        self.wait = 0.0
        self.layer_wait: dict[str, float] = defaultdict(float)
        self.layer_finish: dict[str, int] = {}
        self.round_cycles: list[int] = []
        self.round_wait: list[float] = []
        self.jobs = 0

    def run(self, rounds: list[_Round], plans: list[_Plan]) -> None:
        self.env.process(self._all_rounds(rounds, plans))
        self.env.run()

    def _all_rounds(self, rounds: list[_Round], plans: list[_Plan]) -> Generator[Any, Any, None]:
        for r, (rd, plan) in enumerate(zip(rounds, plans, strict=True)):
            if self.writes:  # the round's crossbars are written before it computes
                yield self.env.timeout(self.writes[r])
            t0 = self.env.now
            self.round_wait.append(0.0)
            yield from self._round(rd, plan)
            self.round_cycles.append(int(self.env.now - t0))

    def _round(self, rd: _Round, plan: _Plan) -> Generator[Any, Any, None]:
        env, k = self.env, self.k
        done = {n: [env.event() for _ in range(k)] for n in rd.layers}
        res = {x: simpy.Resource(env, capacity=1) for n in rd.layers for x in rd.shared[n]}
        gates = self._gates(rd, plan, done)
        t0 = env.now
        procs = [env.process(self._layer(n, rd, plan, t0, done, res, gates[n])) for n in rd.layers]
        yield simpy.AllOf(env, procs)

    def _gates(self, rd: _Round, plan: _Plan, done: dict[str, list[simpy.Event]]
               ) -> dict[str, list[list[simpy.Event]]]:
        """Events each job waits for besides its dependencies (the static release rules)."""
        k = self.k
        gates: dict[str, list[list[simpy.Event]]] = {n: [[] for _ in range(k)] for n in rd.layers}
        if plan.kind == "sequential":
            for i in range(1, k):
                left = simpy.AllOf(self.env, [done[n][i - 1] for n in rd.layers])
                for n in rd.layers:
                    gates[n][i].append(left)
        elif plan.kind == "batched":
            seen: dict[int, list[str]] = defaultdict(list)  # crossbar -> earlier layers on it
            for n in rd.layers:
                earlier = {m for x in rd.shared[n] for m in seen[x]}
                gates[n][0].extend(done[m][k - 1] for m in sorted(earlier))
                for x in rd.shared[n]:
                    seen[x].append(n)
        elif plan.kind == "ordered":
            last: dict[int, tuple[str, int]] = {}  # crossbar -> previous job served on it
            for i, li in plan.order:
                n = rd.layers[li]
                before = {last[x] for x in rd.shared[n] if x in last}
                gates[n][i].extend(done[m][j] for m, j in sorted(before) if m != n)
                for x in rd.shared[n]:
                    last[x] = (n, i)
        return gates

    def _layer(self, name: str, rd: _Round, plan: _Plan, t0: float, done: dict[str, list[simpy.Event]],
               res: dict[int, simpy.Resource], gates: list[list[simpy.Event]]) -> Generator[Any, Any, None]:
        """All k samples of one layer, one after another."""
        env, t_l, deps, xbars = self.env, rd.cycles[name], rd.deps[name], rd.shared[name]
        for i in range(self.k):
            waits = [done[p][i] for p in deps] + gates[i]
            if waits:
                yield simpy.AllOf(env, waits) if len(waits) > 1 else waits[0]
            if plan.kind == "periodic":
                release = t0 + plan.offsets[name] + i * plan.period
                if release > env.now:
                    yield env.timeout(release - env.now)
            ready = env.now
            reqs = []
            for x in xbars:
                req = res[x].request()
                reqs.append((x, req))
                if not req.triggered:  # granted at once needs no trip through the event queue
                    yield req
            if env.now > ready:
                self.wait += env.now - ready
                self.layer_wait[name] += env.now - ready
                self.round_wait[-1] += env.now - ready
            yield env.timeout(t_l)
            for x, req in reqs:
                res[x].release(req)
            self.jobs += 1
            done[name][i].succeed()
        self.layer_finish[name] = int(env.now)


def simulate(mapping: Mapping, k: int, mode: str = "static", schedule: str | None = None,
             timing: Timing | None = None) -> SimResult:
    """Simulate k samples through `mapping` ("chain" or "dag" dependencies, default the mapping's).

    `timing` is the analytic model whose static schedule is replayed (computed when not given).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    schedule = schedule or mapping.schedule
    rounds = _rounds(mapping, schedule)
    if mode == "static":
        timing = timing or mapping_timing(mapping, schedule)
        if [rt.layers for rt in timing.rounds] != [rd.layers for rd in rounds]:
            raise ValueError("the timing's rounds do not match the mapping's")
        plans = [_plan(rt, k) for rt in timing.rounds]
    else:
        plans = [_Plan("asap") for _ in rounds]
    q = rounds[0].ticks_per_cycle if rounds else 1
    sim = _Sim(k, [w * q for w in mapping.write_cycles] if mapping.rounds > 1 else None)
    sim.run(rounds, plans)
    def cyc(ticks: float) -> Any:  # ticks to MVM cycles (exact: ticks per cycle is a power of two)
        return int(ticks) if q == 1 else ticks / q

    return SimResult(
        cycles=cyc(sim.env.now), crossbar_wait_cycles=cyc(sim.wait), jobs=sim.jobs, mode=mode, k=k,
        schedule=schedule, round_schedules=[p.kind for p in plans], round_cycles=[cyc(c) for c in sim.round_cycles],
        round_wait=[cyc(w) for w in sim.round_wait],
        layer_finish={n: cyc(t) for n, t in sim.layer_finish.items()},
        layer_wait={n: cyc(w) for n, w in sim.layer_wait.items()},
    )


def check(mapping: Mapping, samples: Sequence[int] = (1, 8, 64), schedule: str | None = None,
          asap: bool = True) -> dict[int, dict[str, Any]]:
    """Analytic vs simulated cycles for each k in `samples`.

    Returns {k: row}; row holds "analytic", "static", "static_wait", "ok", "plan" (static schedule
    of each round), "round_analytic", "round_static", "round_wait" (per round), and "asap",
    "asap_wait" unless asap=False. ok: the static replay takes exactly the analytic cycles and no
    job waits for a crossbar, except in "sequential" rounds: there one sample is in flight and its
    parallel DAG branches may take turns on a shared crossbar, which L_1 has to include (the cycles
    say whether it does).
    """
    schedule = schedule or mapping.schedule
    timing = mapping_timing(mapping, schedule)
    out: dict[int, dict[str, Any]] = {}
    for k in samples:
        analytic = timing.cycles(k)
        static = simulate(mapping, k, "static", schedule, timing)
        row: dict[str, Any] = {
            "analytic": analytic,
            "static": static.cycles,
            "static_wait": static.crossbar_wait_cycles,
            "plan": static.round_schedules,
            "ok": static.cycles == analytic and all(
                w == 0 for plan, w in zip(static.round_schedules, static.round_wait, strict=True)
                if plan != "sequential"),
            "round_analytic": [timing.as_cycles(rt.cycles_for(k)) for rt in timing.rounds],
            "round_static": static.round_cycles,
            "round_wait": static.round_wait,
        }
        if asap:
            fast = simulate(mapping, k, "asap", schedule)
            row["asap"] = fast.cycles
            row["asap_wait"] = fast.crossbar_wait_cycles
        out[k] = row
    return out
