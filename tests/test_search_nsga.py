"""NSGA-II engine (xbarforge.search.nsga) and its evaluation back-ends (xbarforge.search.backends)."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import pytest

from xbarforge.errors import XbarforgeError
from xbarforge.search.backends import Backend, make_backend
from xbarforge.search.nsga import Evaluated, Objective, pareto_front, run_nsga2

OBJ = [Objective("f1", "min"), Objective("f2", "min")]
CARDS = [5] * 8


def toy(genome: list[int]) -> Evaluated:
    """f1 = sum(g), f2 = sum((4 - g)^2): the extremes are all zeros (f1 = 0) and all fours (f2 = 0)."""
    return Evaluated(genome, {"f1": sum(genome), "f2": sum((4 - g) ** 2 for g in genome)})


def constrained(genome: list[int]) -> Evaluated:
    """The toy, with genomes whose first two genes add up to more than 5 infeasible."""
    e = toy(genome)
    s = genome[0] + genome[1]
    if s > 5:
        return Evaluated(genome, e.values, feasible=False, reason=f"g0+g1={s} > 5", violation=s - 5.0)
    return e


class Counting:
    """An evaluate function that counts its calls per genome."""

    def __init__(self, fn=toy) -> None:
        self.fn = fn
        self.calls: dict[tuple[int, ...], int] = {}

    def __call__(self, genome: list[int]) -> Evaluated:
        key = tuple(genome)
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.fn(genome)


def dominates(a: Evaluated, b: Evaluated, objectives=OBJ) -> bool:
    sa = [a.values[o.name] * (-1 if o.sense == "max" else 1) for o in objectives]
    sb = [b.values[o.name] * (-1 if o.sense == "max" else 1) for o in objectives]
    return all(x <= y for x, y in zip(sa, sb, strict=True)) and any(x < y for x, y in zip(sa, sb, strict=True))


def genomes(items: list[Evaluated]) -> list[list[int]]:
    return [e.genome for e in items]


# ---- pareto_front ----

def test_pareto_front_hand_made_points():
    pts = [
        Evaluated([0], {"lat": 1.0, "acc": 0.5}),
        Evaluated([1], {"lat": 2.0, "acc": 0.9}),
        Evaluated([2], {"lat": 2.0, "acc": 0.8}),   # dominated by [1] (same latency, lower accuracy)
        Evaluated([3], {"lat": 3.0, "acc": 0.9}),   # dominated by [1] (worse latency, same accuracy)
        Evaluated([4], {"lat": 2.0, "acc": 0.9}),   # ties [1]: neither dominates, both stay
        Evaluated([5], {"lat": 0.5, "acc": 1.0}, feasible=False, reason="too big"),  # would dominate all
        Evaluated([6], {"lat": 5.0, "acc": 0.95}),
    ]
    front = pareto_front(pts, [Objective("lat", "min"), Objective("acc", "max")])
    assert genomes(front) == [[0], [1], [4], [6]]  # ascending latency, then genome
    # the senses matter: maximizing latency and minimizing accuracy picks other points
    front = pareto_front(pts, [Objective("lat", "max"), Objective("acc", "min")])
    assert genomes(front) == [[0], [2], [3], [6]]
    assert all(not dominates(a, b, [Objective("lat", "max"), Objective("acc", "min")])
               for a in pts if a.feasible for b in front)
    assert pareto_front([], OBJ) == []
    assert pareto_front([pts[5]], [Objective("lat", "min")]) == []
    with pytest.raises(XbarforgeError, match="no value for objective 'f1'"):
        pareto_front([Evaluated([0], {"f2": 1.0})], OBJ)


def test_evaluated_json_round_trip_and_default_violation():
    e = Evaluated([1, 2], {"a": 1}, feasible=False, reason="why", info={"k": [1, 2]})
    assert e.violation == 1.0 and isinstance(e.values["a"], float)
    assert Evaluated.from_json(json.loads(json.dumps(e.to_json()))) == e


# ---- the search ----

def linear(genome: list[int]) -> Evaluated:
    """f1 = sum(g), f2 = sum(w_i (4 - g_i)) with distinct weights: one Pareto-optimal genome per sum."""
    return Evaluated(genome, {"f1": sum(genome), "f2": sum(w * (4 - g) for w, g in zip(WEIGHTS, genome, strict=True))})


WEIGHTS = [1, 2, 3, 4, 5]


def test_toy_front_is_non_dominated_and_finds_the_known_front():
    true_front = {tuple(e.genome) for e in pareto_front(
        [linear(list(g)) for g in itertools.product(range(5), repeat=5)], OBJ)}
    assert len(true_front) == 21  # sums 0..20
    r = run_nsga2([5] * 5, linear, OBJ, population=20, generations=30, seed=1, progress=False)
    assert r.generations == 30 and r.seconds > 0
    found = {tuple(g) for g in genomes(r.front)}
    assert (0,) * 5 in found and (4,) * 5 in found  # the extremes
    assert len(found & true_front) >= 18  # nearly all of it, from ~400 of 3125 genomes
    assert all(not dominates(a, b) for a in r.evaluated for b in r.front)
    assert [e.values["f1"] for e in r.front] == sorted(e.values["f1"] for e in r.front)


def test_max_objectives_and_initial_genomes():
    # maximize sum(g) and minimize sum((4-g)^2): one point, all fours, dominates everything
    objs = [Objective("f1", "max"), Objective("f2", "min")]
    r = run_nsga2(CARDS, toy, objs, population=10, generations=2, seed=0, progress=False,
                  initial=[[4] * 8, [0] * 8])
    assert genomes(r.evaluated[:2]) == [[4] * 8, [0] * 8]  # injected first, in order
    assert genomes(r.front) == [[4] * 8]


def test_each_genome_is_evaluated_once_and_same_seed_same_result():
    ev = Counting()
    r = run_nsga2(CARDS, ev, OBJ, population=20, generations=25, seed=3, progress=False)
    assert set(ev.calls.values()) == {1}
    assert len(ev.calls) == len(r.evaluated) == len({tuple(g) for g in genomes(r.evaluated)})
    again = run_nsga2(CARDS, toy, OBJ, population=20, generations=25, seed=3, progress=False)
    assert genomes(again.evaluated) == genomes(r.evaluated) and genomes(again.front) == genomes(r.front)
    other = run_nsga2(CARDS, toy, OBJ, population=20, generations=25, seed=4, progress=False)
    assert genomes(other.evaluated) != genomes(r.evaluated)


def test_infeasible_candidates_stay_off_the_front_and_are_logged(tmp_path):
    r = run_nsga2(CARDS, constrained, OBJ, population=20, generations=10, seed=0, out_dir=tmp_path,
                  progress=False)
    assert r.front and all(e.genome[0] + e.genome[1] <= 5 for e in r.front)
    bad = [e for e in r.evaluated if not e.feasible]
    assert bad and all(e.violation > 0 for e in bad)
    lines = [json.loads(x) for x in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert len(lines) == len(r.evaluated)
    for line in lines:
        s = line["genome"][0] + line["genome"][1]
        assert line["feasible"] == (s <= 5)
        assert line["reason"] == (None if s <= 5 else f"g0+g1={s} > 5")
    saved = json.loads((tmp_path / "front.json").read_text())
    assert [p["genome"] for p in saved["front"]] == genomes(r.front)


def test_a_space_smaller_than_the_population_stops_when_exhausted():
    r = run_nsga2([2, 3, 1], toy, OBJ, population=10, generations=5, progress=False)
    assert len(r.evaluated) == 6 and r.generations == 1


def test_bad_inputs_are_one_line_errors(tmp_path):
    cases = [
        (dict(cardinalities=[], population=4, generations=2), "no genes"),
        (dict(cardinalities=[3, 0], population=4, generations=2), "cardinality >= 1"),
        (dict(cardinalities=[3], population=1, generations=2), "population must be >= 2"),
        (dict(cardinalities=[3], population=4, generations=0), "generations must be >= 1"),
        (dict(cardinalities=[3], population=4, generations=1, initial=[[3]]), "does not fit"),
    ]
    for kwargs, msg in cases:
        cards = kwargs.pop("cardinalities")
        with pytest.raises(XbarforgeError, match=msg) as info:
            run_nsga2(cards, toy, OBJ, progress=False, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(XbarforgeError, match="repeat"):
        run_nsga2([3], toy, [Objective("f1", "min")] * 2, progress=False)


# ---- checkpoints and resume ----

def _run(out: Path, generations: int, *, resume: bool = False, ev=toy, **kw) -> object:
    return run_nsga2(CARDS, ev, OBJ, population=12, generations=generations, seed=7, out_dir=out, resume=resume,
                     progress=False, initial=[[0] * 8], settings={"space": "toy", "budget": 10}, **kw)


def test_interrupt_and_resume_equals_an_uninterrupted_run(tmp_path):
    fresh = _run(tmp_path / "fresh", 6)
    _run(tmp_path / "split", 3)
    ev = Counting()
    resumed = _run(tmp_path / "split", 6, resume=True, ev=ev)
    for name in ("candidates.jsonl", "front.json", "state.json"):
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    assert genomes(resumed.front) == genomes(fresh.front) and resumed.evaluated == fresh.evaluated
    gen_lines = [json.loads(x)["generation"] for x in (tmp_path / "fresh" / "candidates.jsonl").open()]
    assert len(ev.calls) == sum(g >= 3 for g in gen_lines)  # replayed generations were not evaluated again

    # resuming a finished run evaluates nothing and changes nothing
    ev = Counting()
    again = _run(tmp_path / "split", 6, resume=True, ev=ev)
    assert not ev.calls and again.evaluated == fresh.evaluated
    assert (tmp_path / "split" / "candidates.jsonl").read_bytes() == (tmp_path / "fresh" / "candidates.jsonl"
                                                                      ).read_bytes()
    # asking for more generations continues, and equals a fresh longer run
    longer = _run(tmp_path / "split", 9, resume=True)
    assert longer.generations == 9 and longer.evaluated == _run(tmp_path / "fresh9", 9).evaluated


def test_resume_after_a_kill_mid_generation(tmp_path):
    fresh = _run(tmp_path / "fresh", 5)
    lines = (tmp_path / "fresh" / "candidates.jsonl").read_text().splitlines(keepends=True)
    _run(tmp_path / "killed", 3)
    gen3 = [x for x in lines if json.loads(x)["generation"] == 3]
    assert len(gen3) >= 3
    with (tmp_path / "killed" / "candidates.jsonl").open("a") as fh:  # 2 lines of generation 3, then a torn one
        fh.write("".join(gen3[:2]) + gen3[2][:25])
    ev = Counting()
    resumed = _run(tmp_path / "killed", 5, resume=True, ev=ev)
    assert (tmp_path / "killed" / "candidates.jsonl").read_text() == "".join(lines)
    assert resumed.evaluated == fresh.evaluated
    assert tuple(json.loads(gen3[0])["genome"]) not in ev.calls  # its logged evaluation was reused


def test_resume_refuses_other_settings_and_needs_the_flag(tmp_path):
    _run(tmp_path, 2)
    with pytest.raises(XbarforgeError, match="pass resume"):
        _run(tmp_path, 2)
    with pytest.raises(XbarforgeError, match=r"seed: 7 there, 8 now"):
        run_nsga2(CARDS, toy, OBJ, population=12, generations=3, seed=8, out_dir=tmp_path, resume=True,
                  progress=False, initial=[[0] * 8], settings={"space": "toy", "budget": 10})
    with pytest.raises(XbarforgeError, match=r"settings.budget: 10 there, 11 now"):
        run_nsga2(CARDS, toy, OBJ, population=12, generations=3, seed=7, out_dir=tmp_path, resume=True,
                  progress=False, initial=[[0] * 8], settings={"space": "toy", "budget": 11})
    with pytest.raises(XbarforgeError, match="cardinalities"):
        run_nsga2([5] * 7 + [4], toy, OBJ, population=12, generations=3, seed=7, out_dir=tmp_path, resume=True,
                  progress=False, initial=[[0] * 8], settings={"space": "toy", "budget": 10})
    with pytest.raises(XbarforgeError, match="objectives"):
        run_nsga2(CARDS, toy, OBJ[::-1], population=12, generations=3, seed=7, out_dir=tmp_path, resume=True,
                  progress=False, initial=[[0] * 8], settings={"space": "toy", "budget": 10})
    # a replay that diverges from the saved run fails loudly
    state = json.loads((tmp_path / "state.json").read_text())
    state["digests"][1] = "0" * 32
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(XbarforgeError, match="replaying generation 1"):
        _run(tmp_path, 3, resume=True)
    # resume=True without a saved state simply starts
    assert _run(tmp_path / "new", 1, resume=True).generations == 1


def test_engine_overhead_is_small():
    t0 = time.perf_counter()
    r = run_nsga2(CARDS, toy, OBJ, population=50, generations=60, seed=0, progress=False)
    assert r.generations == 60
    assert time.perf_counter() - t0 < 5  # the brief: well under 10 s


def test_progress_bar_runs(tmp_path, capsys):
    r = run_nsga2(CARDS, toy, OBJ, population=6, generations=3, seed=0, out_dir=tmp_path, progress=True)
    assert r.generations == 3


# ---- back-ends ----

def test_make_backend_kinds():
    with pytest.raises(XbarforgeError, match="local, process, ray") as info:
        make_backend("gpu")
    assert "\n" not in str(info.value)
    with make_backend("local") as b:
        assert isinstance(b, Backend) and b.name == "local"
        assert b.map(lambda x: x * 2, [3, 1, 2]) == [6, 2, 4]
    with pytest.raises(XbarforgeError, match="workers must be >= 1"):
        make_backend("process", workers=0)


def _double(x: int) -> int:
    return 2 * x


def test_process_backend_matches_local():
    local = run_nsga2([4] * 5, toy, OBJ, population=8, generations=4, seed=2, progress=False)
    with make_backend("process", workers=2) as b:
        assert b.name == "process"
        assert b.map(_double, list(range(7))) == [2 * i for i in range(7)]
        r = run_nsga2([4] * 5, toy, OBJ, population=8, generations=4, seed=2, progress=False, backend=b)
        with pytest.raises(XbarforgeError, match="cannot be pickled"):
            b.map(lambda x: x, [1])
    assert r.evaluated == local.evaluated and genomes(r.front) == genomes(local.front)


def test_ray_backend_matches_local(monkeypatch):
    try:
        import ray
    except Exception as exc:  # noqa: BLE001 - any import failure means no Ray here
        pytest.skip(f"ray cannot be imported: {exc}")
    # Ray workers import this module to unpickle `toy`: give them the tests folder on their path
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    local = run_nsga2([4] * 5, toy, OBJ, population=8, generations=4, seed=2, progress=False)
    try:
        backend = make_backend("ray", workers=2)
    except XbarforgeError as exc:
        ray.shutdown()
        pytest.skip(f"ray.init failed: {exc}")
    try:
        assert backend.map(_double, [3, 1, 2]) == [6, 2, 4]
        r = run_nsga2([4] * 5, toy, OBJ, population=8, generations=4, seed=2, progress=False, backend=backend)
    finally:
        backend.close()
        ray.shutdown()
    assert not ray.is_initialized()
    assert r.evaluated == local.evaluated and genomes(r.front) == genomes(local.front)


def test_ray_missing_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(XbarforgeError, match=r"ray is not installed: pip install 'xbarforge\[ray\]'"):
        make_backend("ray")


def test_a_stale_log_without_state_is_replaced(tmp_path):
    (tmp_path / "candidates.jsonl").write_text('{"generation": 0, "genome": [9]}\n{"torn')
    r = _run(tmp_path, 2)
    lines = (tmp_path / "candidates.jsonl").read_text().splitlines()
    assert [json.loads(x)["genome"] for x in lines] == genomes(r.evaluated)


def test_ray_unreachable_address_is_one_line_and_quick():
    pytest.importorskip("ray", reason="ray is not installed")
    t0 = time.perf_counter()
    with pytest.raises(XbarforgeError, match=r"cannot connect to the Ray cluster at 127\.0\.0\.1:9") as info:
        make_backend("ray", ray_address="127.0.0.1:9")  # the discard port: nothing listens there
    assert "\n" not in str(info.value) and time.perf_counter() - t0 < 10
