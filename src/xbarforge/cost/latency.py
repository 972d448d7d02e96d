"""Analytic latency and throughput of a Mapping.

Units are MVM cycles (multiply by `HardwareSpec.mvm_ns` for time). Definitions (DESIGN.md):

* layer time T_l = ceil(pixels / copies) * MVMs per pixel per block * blocks taking turns;
* a crossbar shared by several layers is reserved for each layer's whole window, so per sample it
  is busy for the sum of their T_l; the steady-state period P is the larger of the slowest layer
  and the busiest crossbar (or the period the compiler planned the sharing for, if larger);
* one sample (k = 1) runs the layers one after another (chain) or along the longest path (DAG
  schedule, parallel branches side by side); no two layers of one sample overlap in the chain,
  so sharing costs nothing there;
* k > 1 samples stream through a periodic schedule: sample i starts layer l at S_l + i*P, with
  offsets S_l chosen in layer order as early as dependencies allow such that no two windows on a
  crossbar overlap modulo P (this is where sharing adds contention). Latency(k) is the better of
  that and running the k samples back to back: min(k * L_1, S_end + (k - 1) * P). Without
  sharing, S_end = sum of T_l and this is the DESIGN.md formula sum T + (k - 1) max T. When
  sharing forces delays, a few longer periods are tried too;
* or k samples stream layer by layer (layer-batched): each layer processes its k samples back to
  back as soon as its inputs allow, and a crossbar shared by several layers serves them one whole
  batch at a time in layer order (a max-plus recurrence, `RoundTiming.batched_finish`). Without
  sharing this is again sum T + (k - 1) max T;
* latency(k) is the fastest of these static schedules; the report names the one used.

`xbarforge.cost.event_sim` replays the same mapping event by event and must agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from xbarforge.compiler.digital import TICKS_PER_CYCLE
from xbarforge.compiler.mapping import Mapping
from xbarforge.compiler.pack import windows_overlap

PERIOD_STRETCH = (1.1, 1.25, 1.5, 2.0)


@dataclass
class RoundTiming:
    layers: list[str]
    cycles: dict[str, int]  # T_l
    preds: dict[str, list[str]]
    crossbars: dict[str, list[int]]
    first_sample: int  # L_1
    period: int  # P
    offsets: dict[str, int] = field(default_factory=dict)
    fill: int = 0  # S_end: when the first sample leaves the periodic schedule
    # other periodic schedules (period, offsets, fill): a longer period can need fewer delays
    alternatives: list[tuple[int, dict[str, int], int]] = field(default_factory=list)
    shared: bool = True  # does any crossbar hold blocks of two layers?

    def schedules(self) -> list[tuple[int, dict[str, int], int]]:
        return [(self.period, self.offsets, self.fill), *self.alternatives]

    def best_schedule(self, k: int) -> tuple[int, dict[str, int], int] | None:
        """The periodic schedule (period, offsets, fill) fastest for k samples, or None when
        running the samples one after another is at least as fast."""
        best, best_cycles = None, k * self.first_sample
        for period, offsets, fill in self.schedules():
            cycles = fill + (k - 1) * period
            if k > 1 and cycles < best_cycles:
                best, best_cycles = (period, offsets, fill), cycles
        return best

    def periodic_cycles(self, k: int) -> int:
        sched = self.best_schedule(k)
        return k * self.first_sample if sched is None else sched[2] + (k - 1) * sched[0]

    def batched_finish(self, k: int) -> dict[str, list[int]]:
        """Finish time of every sample at every layer in the layer-batched schedule.

        Each layer streams its k samples one after another; a crossbar shared by several layers
        serves them in layer order, a whole batch each, so a layer starts only after every
        earlier layer on its crossbars has finished all k samples. Per layer this is the max-plus
        recurrence C(i) = T + max(C(i-1), ready(i)).
        """
        done_on: dict[int, int] = {}
        finish: dict[str, list[int]] = {}
        for name in self.layers:
            t_l = self.cycles[name]
            release = max((done_on.get(x, 0) for x in self.crossbars[name]), default=0)
            prev = release
            out = []
            for i in range(k):
                ready = max((finish[p][i] for p in self.preds[name]), default=0)
                prev = max(prev, ready) + t_l
                out.append(prev)
            finish[name] = out
            for x in self.crossbars[name]:
                done_on[x] = out[-1]
        return finish

    def batched_cycles(self, k: int) -> int:
        finish = self.batched_finish(k)
        return max((f[-1] for f in finish.values()), default=0)

    def _orders(self, k: int) -> list[list[tuple[int, int]]]:
        """Candidate arbitration orders: by when each job would start with no crossbar shared
        (sample i at layer l: S_l + i * max T, S_l the first sample's start), and by its start in
        the fastest periodic schedule for k (self-timed, that order is never slower than the
        periodic schedule itself). Earlier layers first on ties."""
        top = max(self.cycles.values(), default=0)
        start, t = [], 0
        for name in self.layers:
            start.append(t)
            t += self.cycles[name]
        keys = [(top, start)]
        sched = self.best_schedule(k)
        if sched is not None:
            period, offsets, _ = sched
            keys.append((period, [offsets[name] for name in self.layers]))
        orders = []
        for step, first in keys:
            jobs = sorted((i * step + first[li], li, i) for i in range(k) for li in range(len(self.layers)))
            orders.append([(i, li) for _, li, i in jobs])
        return orders

    def job_order(self, k: int) -> list[tuple[int, int]]:
        """The order crossbars serve (sample, layer index) jobs in the ordered schedule: the
        faster of `_orders`."""
        return self._ordered(k)[0]

    def _ordered(self, k: int) -> tuple[list[tuple[int, int]], dict[str, list[int]]]:
        cache = self.__dict__.setdefault("_ordered_cache", {})
        if k not in cache:
            runs = [(order, self._run_order(order, k)) for order in self._orders(k)]
            cache[k] = min(runs, key=lambda run: max((f[-1] for f in run[1].values()), default=0))
        return cache[k]

    def ordered_finish(self, k: int) -> dict[str, list[int]]:
        """Finish times in the ordered schedule: every crossbar serves jobs in `job_order`, each
        job as soon as its inputs, its layer's previous sample and its crossbars allow. This is
        how a self-timed chip with a fixed arbitration order runs; it needs no period."""
        return self._ordered(k)[1]

    def _run_order(self, order: list[tuple[int, int]], k: int) -> dict[str, list[int]]:
        index = {name: i for i, name in enumerate(self.layers)}
        xbars = [self.crossbars[name] for name in self.layers]
        deps = [[index[p] for p in self.preds[name] if p in index] for name in self.layers]
        cycles = [self.cycles[name] for name in self.layers]
        free = [0] * (1 + max((x for xs in xbars for x in xs), default=0))
        finish = [[0] * k for _ in self.layers]
        for i, li in order:
            row = finish[li]
            ready = row[i - 1] if i else 0
            for p in deps[li]:
                if finish[p][i] > ready:
                    ready = finish[p][i]
            xs = xbars[li]
            for x in xs:
                if free[x] > ready:
                    ready = free[x]
            end = ready + cycles[li]
            row[i] = end
            for x in xs:
                free[x] = end
        return {name: finish[i] for i, name in enumerate(self.layers)}

    def ordered_cycles(self, k: int) -> int:
        finish = self.ordered_finish(k)
        return max((f[-1] for f in finish.values()), default=0)

    def schedule_cycles(self, k: int) -> dict[str, int]:
        """Cycles for k samples under each static schedule. Without shared crossbars every layer
        is its own pipeline stage and the layer-batched recurrence is exact ("pipelined")."""
        if k <= 1:
            return {"sequential": self.first_sample}
        if not self.shared:
            return {"sequential": k * self.first_sample, "pipelined": self.batched_cycles(k)}
        return {"sequential": k * self.first_sample, "periodic": self.periodic_cycles(k),
                "batched": self.batched_cycles(k), "ordered": self.ordered_cycles(k)}

    def schedule_for(self, k: int) -> str:
        """Which schedule is fastest for k samples (sequential preferred on ties)."""
        options = self.schedule_cycles(k)
        return min(options, key=lambda name: (options[name], name != "sequential"))

    def cycles_for(self, k: int) -> int:
        return min(self.schedule_cycles(k).values())


@dataclass
class Timing:
    """The rounds' schedules. Rounds count ticks (`ticks_per_cycle` per MVM cycle: 1 unless digital
    stages are in); `cycles`, `period`, `interval` and `layer_cycles` are in MVM cycles."""

    rounds: list[RoundTiming]
    schedule: str
    write_cycles: list[int] = field(default_factory=list)  # per round, when the chip is reprogrammed (ticks)
    ticks_per_cycle: int = 1

    def ticks(self, k: int) -> int:
        """Ticks for k samples: rounds one after another, each after writing its crossbars."""
        return sum(r.cycles_for(k) for r in self.rounds) + sum(self.write_cycles)

    def as_cycles(self, ticks: int) -> int | float:
        """Ticks to MVM cycles (exact: ticks per cycle is a power of two)."""
        return ticks if self.ticks_per_cycle == 1 else ticks / self.ticks_per_cycle

    def cycles(self, k: int) -> int | float:
        """MVM cycles for k samples (a fraction when digital stages take parts of an MVM)."""
        return self.as_cycles(self.ticks(k))

    @property
    def period(self) -> int | float:
        """Steady-state cycles per sample (sum over rounds when the model is reprogrammed)."""
        return self.as_cycles(sum(r.period for r in self.rounds))

    def interval(self, k: int) -> float:
        """Cycles between samples when k stream through the schedule that gives latency(k):
        (latency(k) - latency(1)) / (k - 1); the steady-state period when k = 1. Throughput is its
        inverse, so it comes from the same schedule as the latency."""
        if k <= 1:
            return float(self.period) + self.as_cycles(sum(self.write_cycles))
        return (self.cycles(k) - self.cycles(1)) / (k - 1)

    @property
    def layer_cycles(self) -> dict[str, int]:
        """Cycles per sample of each layer (summed over the rounds a split layer runs in)."""
        out: dict[str, int] = defaultdict(int)
        for r in self.rounds:
            for name, c in r.cycles.items():
                out[name] += c
        return {name: self.as_cycles(c) for name, c in out.items()}


def _periodic_offsets(rt: RoundTiming, period: int) -> tuple[int, dict[str, int], int]:
    """Offsets for the periodic schedule of at least `period` cycles: (period, offsets, fill)."""
    while True:
        reserved: dict[int, list[tuple[int, int]]] = defaultdict(list)
        offsets: dict[str, int] = {}
        ok = True
        for name in rt.layers:
            t_l = rt.cycles[name]
            ready = max((offsets[p] + rt.cycles[p] for p in rt.preds[name] if p in offsets), default=0)
            xbars = rt.crossbars[name]
            intervals = [iv for x in xbars for iv in reserved.get(x, ())]
            start = _earliest(ready, t_l, intervals, period)
            if start is None:  # no common free window: stretch the period a little and retry
                ok = False
                period += max(1, period // 32)
                break
            offsets[name] = start
            for x in xbars:
                reserved[x].append((start % period, t_l))
        if ok:
            return period, offsets, max((offsets[n] + rt.cycles[n] for n in rt.layers), default=0)


def _earliest(ready: int, length: int, intervals: list[tuple[int, int]], period: int) -> int | None:
    if not intervals:
        return ready
    candidates = {ready}
    for s, ln in intervals:
        candidates.add(ready + (s + ln - ready) % period)  # first time >= ready the interval ends
    for t in sorted(candidates):
        if t >= ready + period:
            break
        if all(not windows_overlap(t, length, s, ln, period) for s, ln in intervals):
            return t
    return None


def round_timing(layers: list[str], cycles: dict[str, int], preds: dict[str, list[str]],
                 crossbars: dict[str, list[int]], schedule: str, period_hint: int | None = None) -> RoundTiming:
    """Timing of one set of layers resident on the chip together."""
    in_round = set(layers)
    if schedule == "chain":
        deps = {name: ([layers[i - 1]] if i else []) for i, name in enumerate(layers)}
    else:
        deps = {name: [p for p in preds.get(name, []) if p in in_round] for name in layers}
    finish: dict[str, int] = {}
    for name in layers:
        finish[name] = max((finish[p] for p in deps[name]), default=0) + cycles[name]
    first = max(finish.values(), default=0)
    busy: dict[int, int] = defaultdict(int)
    for name in layers:
        for x in crossbars[name]:
            busy[x] += cycles[name]
    period = max([*cycles.values(), *busy.values(), period_hint or 0])
    rt = RoundTiming(layers, {n: cycles[n] for n in layers}, deps, crossbars, first, period)
    owners: dict[int, int] = defaultdict(int)
    for name in layers:
        for x in crossbars[name]:
            owners[x] += 1
    rt.shared = any(n > 1 for n in owners.values())
    if rt.shared and schedule != "chain":
        # parallel branches of one sample may share a crossbar: place the sample in layer order,
        # each layer when its inputs and its crossbars are free
        rt.first_sample = max((f[0] for f in rt.ordered_finish(1).values()), default=0)
    if not rt.shared:  # no contention: the layers are plain pipeline stages
        rt.period = max(cycles[n] for n in layers) if layers else 0
        rt.offsets = {n: finish[n] - cycles[n] for n in layers}
        rt.fill = first
        return rt
    rt.period, rt.offsets, rt.fill = _periodic_offsets(rt, period)
    if rt.fill > first:  # contention delays: longer periods may need fewer of them
        seen = {rt.period}
        for stretch in PERIOD_STRETCH:
            sched = _periodic_offsets(rt, max(rt.period + 1, round(period * stretch)))
            if sched[0] not in seen:
                seen.add(sched[0])
                rt.alternatives.append(sched)
    return rt


def pipeline_cycles(layer_cycles: Sequence[float], k: int) -> float:
    """Cycles for k samples through a chain of layers that share no crossbar (DESIGN.md's latency):
    the sum of the layer times plus (k - 1) times the largest. `round_timing` gives the same for an
    unshared round; this is its closed form for search loops."""
    return sum(layer_cycles) + (k - 1) * max(layer_cycles, default=0)


def layer_crossbars(mapping: Mapping) -> dict[str, list[int]]:
    """Every crossbar holding a block of each layer (all rounds), from the runs and placed blocks."""
    out: dict[str, set[int]] = defaultdict(set)
    for run in mapping.runs:
        out[run.layer].update(range(run.crossbar0, run.crossbar0 + run.crossbars))
    for sr in mapping.shared:
        for s in sr.shares:
            out[s.layer].update(range(sr.crossbar0, sr.crossbar0 + sr.crossbars))
    for b in mapping.placed:
        out[b.layer].add(b.crossbar)
    return {name: sorted(xs) for name, xs in out.items()}


@dataclass
class RoundLayers:
    """What one reprogramming round runs: per layer, its cycles in the round and the crossbars that can
    make it wait (a run's private crossbars stand as one id, and crossbars holding the same set of
    layers as one: they constrain the schedule alike), and the layers each one reads (DAG schedule).
    Digital stages (`Mapping.digital`) are layers too: all stages on one unit hold one shared id."""

    names: list[str]
    cycles: dict[str, int]  # in ticks of mvm_ns / ticks_per_cycle
    crossbars: dict[str, list[int]]
    preds: dict[str, list[str]] = field(default_factory=dict)
    ticks_per_cycle: int = 1  # TICKS_PER_CYCLE when digital stages are in (they take parts of an MVM)


def _turns(blocks: list, fires_together: bool) -> int:
    if not fires_together:
        return len(blocks)
    colours: list[list] = []
    for b in blocks:
        for col in colours:
            if all(not (b.row_offset < o.row_offset + o.height and o.row_offset < b.row_offset + b.height
                        or b.col_offset < o.col_offset + o.width and o.col_offset < b.col_offset + b.width)
                   for o in col):
                col.append(b)
                break
        else:
            colours.append([b])
    return len(colours)


def round_turns(mapping: Mapping) -> list[dict[str, int]]:
    """Per round (in order), per layer: the most of its blocks that take turns on one crossbar."""
    turns: dict[int, dict[str, int]] = defaultdict(dict)

    def note(r: int, name: str, t: int) -> None:
        turns[r][name] = max(turns[r].get(name, 1), t)

    for run in mapping.runs:
        note(run.round, run.layer, run.turns)
    for sr in mapping.shared:
        by: dict[str, list] = defaultdict(list)
        for sh in sr.shares:
            by[sh.layer].append(sh)
        plans = {lp.name: lp for lp in mapping.layers}
        for name, shares in by.items():
            shape = plans[name].copy_blocks[shares[0].block0] if len(shares) > 1 else None
            boxes = [_Box(s.row, s.col, shape.height, shape.width) for s in shares] if shape else []
            note(sr.round, name, _turns(boxes, mapping.fires_together) if boxes else 1)
    groups: dict[tuple[int, str, int], list] = defaultdict(list)
    for b in mapping.placed:
        groups[(b.round, b.layer, b.crossbar)].append(b)
    for (r, name, _), bs in groups.items():
        note(r, name, _turns(bs, mapping.fires_together))
    return [turns[r] for r in sorted(turns)]


@dataclass(frozen=True)
class _Box:
    row_offset: int
    col_offset: int
    height: int
    width: int


def round_layers(mapping: Mapping, digital: bool = True) -> list[RoundLayers]:
    """Per round, the layers it runs and their cycles: tau x the turns of the layer's blocks in that
    round (a layer split over rounds runs its part in each, with that part's turns); with `digital`,
    the mapping's digital stages too (`_with_stages`)."""
    xbars: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for run in mapping.runs:
        xbars[run.round][run.layer].add(run.crossbar0)
    owners: dict[tuple[int, int], set[str]] = defaultdict(set)
    for sr in mapping.shared:
        owners[(sr.round, sr.crossbar0)].update(s.layer for s in sr.shares)
    for b in mapping.placed:
        owners[(b.round, b.crossbar)].add(b.layer)
    # crossbars shared by the same set of layers constrain the schedule alike: one stands for all
    seen: set[tuple[int, frozenset[str]]] = set()
    for (r, x), names in owners.items():
        key = (r, frozenset(names))
        for name in names:
            if key not in seen or len(names) == 1:
                xbars[r][name].add(x)
            else:
                xbars[r][name]  # noqa: B018  (the layer still runs in this round)
        seen.add(key)
    rounds = sorted(xbars)
    turns = dict(zip(sorted({run.round for run in mapping.runs} | {sr.round for sr in mapping.shared}
                            | {b.round for b in mapping.placed}), round_turns(mapping), strict=True))
    out = []
    for r in rounds:
        names = [lp.name for lp in mapping.layers if lp.name in xbars[r]]
        cycles = {lp.name: lp.tau * turns[r].get(lp.name, 1) for lp in mapping.layers if lp.name in xbars[r]}
        preds = {lp.name: list(lp.preds) for lp in mapping.layers if lp.name in xbars[r]}
        out.append(RoundLayers(names, cycles, {n: sorted(xbars[r][n]) for n in names}, preds))
    if digital and mapping.digital and out:
        _with_stages(mapping, out)
    return out


def _with_stages(mapping: Mapping, rounds: list[RoundLayers]) -> None:
    """Put every digital stage in the round of the MVM layer it follows, right after it, on its
    unit's shared id (one past the crossbars' ids); MVM layers it feeds wait for it."""
    for rl in rounds:
        rl.cycles = {name: c * TICKS_PER_CYCLE for name, c in rl.cycles.items()}
        rl.ticks_per_cycle = TICKS_PER_CYCLE
    top = max((x for rl in rounds for xs in rl.crossbars.values() for x in xs), default=-1)
    unit_ids = {"vector": top + 1, "crossbar": top + 2}
    home = {name: i for i, rl in enumerate(rounds) for name in rl.names}  # last round holding a layer
    following: dict[tuple[int, str | None], list] = defaultdict(list)
    for st in mapping.digital:
        r = home.get(st.after, 0) if st.after is not None else 0
        following[(r, st.after)].append(st)
    for r, rl in enumerate(rounds):
        names = list(following.get((r, None), []))
        merged = [st.name for st in names]
        for name in rl.names:
            merged.append(name)
            if home.get(name) == r:
                names.extend(following.get((r, name), []))
                merged.extend(st.name for st in following.get((r, name), []))
        for st in names:
            rl.cycles[st.name] = st.ticks
            rl.crossbars[st.name] = [unit_ids[st.unit]]
            rl.preds[st.name] = list(st.preds)
            for fed in st.feeds:
                if fed in rl.preds:
                    rl.preds[fed].append(st.name)
        rl.names = merged


def mapping_timing(mapping: Mapping, schedule: str | None = None, digital: bool = True) -> Timing:
    """Timing of every reprogramming round, with the write time of each round when there are several.

    `digital=False` leaves the digital stages out: the compiler balances the MVM layers alone.
    """
    schedule = schedule or mapping.schedule
    layers = round_layers(mapping, digital)
    q = layers[0].ticks_per_cycle if layers else 1
    hint = mapping.period_hint * q if mapping.period_hint else None
    rounds = [round_timing(rl.names, rl.cycles, rl.preds, rl.crossbars, schedule, hint) for rl in layers]
    writes = [w * q for w in mapping.write_cycles] if mapping.rounds > 1 else []
    return Timing(rounds, schedule, writes, q)
