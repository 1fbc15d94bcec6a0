"""The supernet: one path per forward, extraction equals the active path, BN recalibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from supernet.blocks import Backbone
from supernet.bn import recalibrate_bn
from supernet.net import ElasticBlock, Supernet
from supernet.ops import DynamicBatchNorm2d


def _archs(space, n_samples: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [space.smallest(), space.largest(), space.baseline] + [space.sample(rng)
                                                                 for _ in range(n_samples)]


def _randomize(net: nn.Module, seed: int = 0) -> None:
    """Random BN affine and running stats (fresh ones are 0/1: equivalence would be too easy)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _loss(feats: list[torch.Tensor]) -> torch.Tensor:
    """A fixed random projection of the features (mean(f^2) of a BN output is ~1 for any input, so
    it would send ~no gradient to the layers below the last BN)."""
    g = torch.Generator().manual_seed(0)
    return sum((f * torch.randn(f.shape, generator=g)).mean() for f in feats)


@pytest.fixture(scope="module")
def tiny_net(tiny_space) -> Supernet:
    torch.manual_seed(0)
    return Supernet(tiny_space, sharing="separate")  # one set of weights per op (path tests)


def test_archs_run_with_right_shapes(tiny_space, tiny_net):
    tiny_net.train()
    x = torch.randn(2, 3, 64, 64)
    for arch in _archs(tiny_space, 5):
        tiny_net.set_active(arch)
        assert tiny_net.active_arch == arch
        feats = tiny_net(x)
        taps = tiny_space.tap_blocks(arch, (8, 16, 32))
        assert [tuple(f.shape) for f in feats] == [(2, arch.blocks[t].channels, s, s)
                                                   for t, s in zip(taps, (8, 4, 2))]
        assert all(torch.isfinite(f).all() for f in feats)
        assert all(f.shape[1] <= c for f, c in zip(feats, tiny_net.max_tap_channels))
        with torch.no_grad():  # a single image, eval mode (running stats)
            single = tiny_net.eval()(x[:1])
        tiny_net.train()
        assert [f.shape for f in single] == [f[:1].shape for f in feats]
        assert all(torch.isfinite(f).all() for f in single)
    largest = tiny_space.largest()
    assert tiny_net.max_tap_channels == [largest.blocks[t].channels
                                         for t in tiny_space.tap_blocks(largest, (8, 16, 32))]


def test_forward_needs_an_active_arch(tiny_space):
    net = Supernet(tiny_space)
    with pytest.raises(RuntimeError, match="set_active"):
        net(torch.zeros(1, 3, 64, 64))
    outside = tiny_space.parse(str(tiny_space.baseline)).blocks[:-1]
    with pytest.raises(ValueError, match="outside the space"):
        net.set_active(type(tiny_space.baseline)(outside))


@pytest.mark.parametrize("space_name, n_samples, sharing", [
    ("tiny_space", 5, "separate"), ("tiny_space", 5, "nested"), ("tiny_space", 3, "nested_ir"),
    ("default_space", 2, "nested")])
def test_extract_equals_supernet(request, space_name, n_samples, sharing):
    space = request.getfixturevalue(space_name)
    torch.manual_seed(0)
    net = Supernet(space, sharing=sharing)
    _randomize(net)
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    for arch in _archs(space, n_samples, seed=1):
        net.set_active(arch)
        standalone = net.extract(arch).eval()
        assert isinstance(standalone, Backbone)
        assert not any(isinstance(m, (ElasticBlock, DynamicBatchNorm2d)) for m in standalone.modules())
        assert sum(p.numel() for p in standalone.parameters()) == space.params(arch)
        with torch.no_grad():
            expected, got = net(x), standalone(x)
        assert len(expected) == len(got) == 3
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            assert (e - g).abs().max().item() < 1e-5, str(arch)


def _active_prefixes(net: Supernet, arch) -> set[str]:
    """Names of the ElasticBlocks on the path of `arch` (``stages.i.j.op``)."""
    prefixes = set()
    for i, group in enumerate(net.space.split(arch)):
        for j, block in enumerate(group):
            prefixes.add(f"stages.{i}.{j}.{block.op_name}.")
    return prefixes


def test_set_active_runs_exactly_one_path(tiny_space, tiny_net):
    arch = tiny_space.sample(np.random.default_rng(3))
    tiny_net.train().zero_grad(set_to_none=True)
    tiny_net.set_active(arch)
    _loss(tiny_net(torch.randn(2, 3, 64, 64))).backward()
    prefixes = _active_prefixes(tiny_net, arch)
    ses = {f"stages.{i}.{j}.{b.op_name}.se.se{round(b.se * 100)}."
           for i, g in enumerate(tiny_space.split(arch)) for j, b in enumerate(g) if b.se > 0}
    for name, p in tiny_net.named_parameters():
        on_path = any(name.startswith(q) for q in prefixes)
        if ".se." in name:  # SE modules: only the chosen ratio of the chosen op
            on_path = any(name.startswith(q) for q in ses)
        assert (p.grad is not None) == on_path, name
        if on_path:
            assert p.grad.abs().sum() > 0, name
    tiny_net.zero_grad(set_to_none=True)


def test_kernel_crop_and_channel_slice_get_gradient(tiny_space, tiny_net):
    # a 3x3 choice trains only the centre of the 7x7 superkernel, and only the active channels
    arch = tiny_space.smallest()
    tiny_net.train().zero_grad(set_to_none=True)
    tiny_net.set_active(arch)
    _loss(tiny_net(torch.randn(2, 3, 64, 64))).backward()
    i, block = 2, tiny_space.split(arch)[2][0]
    spatial = tiny_net.stages[i][0][block.op_name].spatial.weight
    assert block.kernel == 3 and spatial.shape[-1] == 7
    grad = spatial.grad
    mid = block.mid_channels(arch.blocks[1].channels)  # input = the previous stage's width
    assert grad[:mid, :, 2:5, 2:5].abs().sum() > 0
    mask = torch.zeros_like(grad, dtype=torch.bool)
    mask[:mid, :, 2:5, 2:5] = True
    assert grad[~mask].abs().sum() == 0
    tiny_net.zero_grad(set_to_none=True)


class _Detector(nn.Module):
    """A stand-in detector: a supernet backbone plus a BN of its own, with its own set_active."""

    def __init__(self, space):
        super().__init__()
        self.backbone = Supernet(space)
        self.head_bn = nn.BatchNorm2d(self.backbone.max_tap_channels[-1])

    def set_active(self, arch) -> None:
        self.backbone.set_active(arch)

    def forward(self, images):
        last = self.backbone(images)[-1]
        pad = self.head_bn.num_features - last.shape[1]
        return self.head_bn(nn.functional.pad(last, (0, 0, 0, 0, 0, pad)))


def test_recalibrate_bn_sets_batch_statistics(tiny_space):
    torch.manual_seed(0)
    model = _Detector(tiny_space)
    _randomize(model)
    arch = tiny_space.smallest()  # narrow widths: the sliced BN keeps its other channels
    seen: dict[str, list[torch.Tensor]] = {}
    names = {m: n for n, m in model.named_modules()}
    hooks = [m.register_forward_pre_hook(lambda m, inp: seen.setdefault(names[m], []).append(
        inp[0].detach().clone())) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(4, 3, 64, 64), "targets") for _ in range(3)]
    assert recalibrate_bn(model, arch, batches) == 3
    for h in hooks:
        h.remove()
    assert not model.training
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert "head_bn" in seen and len(seen) > len(arch)  # the whole active path was recalibrated
    for name, inputs in seen.items():
        bn = model.get_submodule(name)
        c = inputs[0].shape[1]
        # cumulative average (momentum None) of the per-batch statistics
        mean = torch.stack([x.mean((0, 2, 3)) for x in inputs]).mean(0)
        var = torch.stack([x.var((0, 2, 3), unbiased=True) for x in inputs]).mean(0)
        torch.testing.assert_close(bn.running_mean[:c], mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var[:c], var, rtol=1e-4, atol=1e-5)
        # channels beyond the active width are untouched
        torch.testing.assert_close(bn.running_mean[c:], before[f"{name}.running_mean"][c:])
    # BNs off the path (other ops, skipped layers) are untouched
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and name not in seen:
            torch.testing.assert_close(m.running_mean, before[f"{name}.running_mean"])
            torch.testing.assert_close(m.running_var, before[f"{name}.running_var"])
    with pytest.raises(ValueError, match="no batch"):
        recalibrate_bn(model, arch, [])


def test_nested_sharing_slices_one_set_of_weights(tiny_space):
    """Full nesting: ir3 trains the first half of ir6's hidden channels, dw the first c_in
    depthwise filters and projection columns; nothing else of the layer."""
    torch.manual_seed(0)
    net = Supernet(tiny_space, sharing="nested").train()
    assert set(net.stages[1][0].keys()) == {"nested"}
    layer = net.stages[1][0]["nested"]
    base = [str(b) for b in tiny_space.baseline.blocks]
    c_in = tiny_space.baseline.blocks[0].channels  # stem width (fixed) feeds stage 1
    for op, mid in (("E3", 3 * c_in), ("D", c_in)):
        arch = tiny_space.parse("-".join([base[0], f"{op}K3C8S2"] + base[2:]))
        net.zero_grad(set_to_none=True)
        net.set_active(arch)
        _loss(net(torch.randn(2, 3, 64, 64))).backward()
        spatial = layer.spatial.weight.grad
        assert spatial[:mid, :, 2:5, 2:5].abs().sum() > 0
        assert spatial[mid:].abs().sum() == 0 and spatial[:, :, :2].abs().sum() == 0
        project = layer.project.weight.grad
        assert project[:8, :mid].abs().sum() > 0 and project[:, mid:].abs().sum() == 0
        expand = layer.expand.weight.grad
        if op == "D":  # no expansion: the expand conv is not on the path
            assert expand is None
        else:
            assert expand[:mid].abs().sum() > 0 and expand[mid:].abs().sum() == 0
    with pytest.raises(ValueError, match="sharing"):
        Supernet(tiny_space, sharing="everything")
