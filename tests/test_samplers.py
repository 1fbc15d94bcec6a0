"""Samplers: strict per-factor fairness (FairNAS), uniform (SPOS), exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from supernet.net import Supernet
from supernet.samplers import PathSchedule, StrictFairSampler, UniformSampler


def _recount(space, archs, counts=None) -> dict[str, np.ndarray]:
    """Activation counts per variable, recomputed from the archs (independent of the sampler)."""
    counts = counts if counts is not None else {v.name: np.zeros(v.n_choices, dtype=np.int64)
                                                for v in space.variables}
    for arch in archs:
        groups = space.split(arch)
        for st in space.searchable_stages:
            group = groups[st.index]
            values = {"width": st.widths.index(group[0].channels),
                      "depth": st.depths.index(len(group))}
            for factor, value in values.items():
                if f"s{st.index}.{factor}" in counts:
                    counts[f"s{st.index}.{factor}"][value] += 1
            for j, b in enumerate(group):
                values = {"op": space.ops.index((b.op, b.expand)), "kernel": space.kernels.index(b.kernel),
                          "se": space.se_ratios.index(b.se)}
                for factor, value in values.items():
                    if f"s{st.index}.l{j}.{factor}" in counts:
                        counts[f"s{st.index}.l{j}.{factor}"][value] += 1
    return counts


def _always_present(space) -> set[str]:
    names = set()
    for st in space.searchable_stages:
        names |= {f"s{st.index}.width", f"s{st.index}.depth"}
        names |= {f"s{st.index}.l{j}.{f}" for j in range(min(st.depths)) for f in ("op", "kernel", "se")}
    return names & {v.name for v in space.variables}


def test_strict_fairness(tiny_space):
    space = tiny_space
    sampler = StrictFairSampler(space, seed=0)
    assert sampler.m == 6  # lcm(3 ops, 3 kernels, 2 SE, 3 widths, 3 or 2 depths)
    # depths {1,2,3}: layers 1, 2 are in 4 and 2 of 6 paths -> 3 ops balance every 3 steps;
    # depths {1,2}: layer 1 in 3 of 6 paths -> 2 SE choices balance every 2 steps
    assert sampler.windows["s2.l1.op"] == 3 and sampler.windows["s1.l1.se"] == 2
    assert sampler.windows["s2.l0.op"] == 1 and sampler.window == 6
    always = _always_present(space)
    counts = None
    for step in range(1, 2 * sampler.window + 1):
        paths = sampler.step()
        assert len(paths) == sampler.m
        counts = _recount(space, paths, counts)
        for name, c in counts.items():
            np.testing.assert_array_equal(c, sampler.counts[name], err_msg=name)
            if name in always:  # exactly m/n per choice in every single step
                assert np.all(c == step * sampler.m // len(c)), (step, name, c)
            if step % sampler.windows[name] == 0:
                assert np.all(c == c[0]), (step, name, c)
    assert all(np.all(c == c[0]) and c[0] > 0 for c in counts.values())


def test_every_op_trained_every_step(tiny_space):
    torch.manual_seed(0)
    net = Supernet(tiny_space, sharing="separate").train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    sampler = StrictFairSampler(tiny_space, seed=1)
    x = torch.randn(2, 3, 64, 64)
    # a fixed random projection: a function of the features that BN's normalization does not cancel
    # (mean(f^2) of a BN output is ~1 whatever its input, so earlier layers would get ~no gradient)
    g = torch.Generator().manual_seed(0)
    proj = [torch.randn(2, c, s, s, generator=g) for c, s in zip(net.max_tap_channels, (8, 4, 2))]
    for _ in range(2):
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        opt.zero_grad(set_to_none=True)
        for arch in sampler.step():  # gradient accumulation over the m paths, one update
            net.set_active(arch)
            loss = sum((f * w[:, :f.shape[1]]).mean() for f, w in zip(net(x), proj))
            (loss / sampler.m).backward()
        opt.step()
        checked = 0
        for st in tiny_space.searchable_stages:
            for j in range(min(st.depths)):  # always-present layers
                for op_name, block in net.stages[st.index][j].items():
                    for name, p in block.named_parameters():
                        if name.startswith("se."):  # SE modules depend on the op x SE pairing
                            continue
                        full = f"stages.{st.index}.{j}.{op_name}.{name}"
                        assert not torch.equal(p, before[full]), f"{full} did not change"
                        checked += 1
        assert checked > 0


def test_uniform_counts_within_binomial_tolerance(tiny_space):
    sampler = UniformSampler(tiny_space, seed=0)
    archs = [a for _ in range(3000) for a in sampler.step()]
    assert sampler.m == 1 and len(archs) == 3000
    counts = _recount(tiny_space, archs)
    assert counts.keys() == sampler.counts.keys()
    for name, c in counts.items():
        np.testing.assert_array_equal(c, sampler.counts[name], err_msg=name)
        n, p = c.sum(), 1 / len(c)  # given the layer is active, each choice has probability 1/n
        sigma = math.sqrt(n * p * (1 - p))
        assert np.all(np.abs(c - n * p) <= 4 * sigma), (name, c)
    # optional layers are active in a fraction of the paths: the deepest in 1 of 3 depth choices
    assert counts["s2.l2.op"].sum() < 0.5 * counts["s2.l0.op"].sum()
    # same draw as space.sample
    rng = np.random.default_rng(0)
    assert UniformSampler(tiny_space, seed=0).step() == [tiny_space.sample(rng)]


@pytest.mark.parametrize("cls", [StrictFairSampler, UniformSampler])
def test_state_dict_resumes_identically(tiny_space, cls):
    a = cls(tiny_space, seed=3)
    for _ in range(4):
        a.step()
    state = json.loads(json.dumps(a.state_dict()))  # plain data: survives JSON
    b = cls(tiny_space, seed=99)
    b.load_state_dict(state)
    assert b.steps == a.steps == 4
    for _ in range(5):
        assert a.step() == b.step()
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name])
    other = UniformSampler if cls is StrictFairSampler else StrictFairSampler
    with pytest.raises(ValueError, match="sampler"):
        other(tiny_space, seed=0).load_state_dict(state)


def test_path_schedule_phases(tiny_space):
    """Warm start on the largest path, progressive shrinking (kernel, depth, width, op+SE), then all."""
    sampler = StrictFairSampler(tiny_space, seed=0)
    sched = PathSchedule(sampler, total=100, warm=0.2, shrink=0.4)
    assert sched.paths(0) == [tiny_space.largest()] and sched.paths(19) == [tiny_space.largest()]
    largest = tiny_space.encode(tiny_space.largest())
    names = [v.name.rsplit(".", 1)[-1] for v in tiny_space.variables]
    for step, elastic in ((20, {"kernel"}), (35, {"kernel", "depth"}), (45, {"kernel", "depth", "width"}),
                          (55, {"kernel", "depth", "width", "op", "se"})):
        assert sched.elastic(step) == frozenset(elastic)
        for arch in sched.paths(step):
            x = tiny_space.encode(arch)
            # layers past a sampled depth encode as 0: compare the stage-level variables, and
            # the op/SE of the blocks that are there
            fixed = [i for i, n in enumerate(names) if n not in elastic and n in ("width", "depth")]
            assert np.array_equal(x[fixed], largest[fixed]), (step, str(arch))
            if "op" not in elastic:
                assert all(b.op_name == "ir6" and b.se > 0 for b in arch.blocks[1:]), str(arch)
    assert sched.elastic(61) is None and len(sched.paths(61)) == sampler.m
    # strict fairness still holds among the elastic factors: kernels of an always-present layer
    sampler = StrictFairSampler(tiny_space, seed=0)
    sched = PathSchedule(sampler, total=10, shrink=1.0)
    for step in range(2):  # kernel-only phase
        sched.paths(step)
    kernel = next(n for n in sampler.counts if n.endswith("l0.kernel"))
    assert len(set(sampler.counts[kernel])) == 1 and sampler.counts[kernel][0] > 0


def test_own_batches_and_sandwich(tiny_space):
    sampler = StrictFairSampler(tiny_space, seed=0)
    sched = PathSchedule(sampler, total=100, own_batches=True)
    paths = [sched.paths(s) for s in range(sampler.m)]
    assert all(len(p) == 1 for p in paths) and sampler.steps == 1  # one fair step on m batches
    reference = StrictFairSampler(tiny_space, seed=0).step()
    assert [p[0] for p in paths] == reference
    # resume in the middle of a step: the pending paths are part of the state
    sampler = StrictFairSampler(tiny_space, seed=3)
    sampler.next_path()
    state = sampler.state_dict()
    rest = [sampler.next_path() for _ in range(sampler.m)]
    resumed = StrictFairSampler(tiny_space, seed=3)
    resumed.load_state_dict(state)
    assert [resumed.next_path() for _ in range(sampler.m)] == rest
    sched = PathSchedule(UniformSampler(tiny_space, seed=0), total=10, sandwich=True)
    paths = sched.paths(5)
    assert len(paths) == 4 and paths[0] == tiny_space.largest() and paths[1] == tiny_space.smallest()
    with pytest.raises(ValueError):
        PathSchedule(sampler, total=10, warm=0.7, shrink=0.5)
