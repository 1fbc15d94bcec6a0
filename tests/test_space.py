"""The search space and the arch notation; the parameter counts are checked against torch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import yaml

from supernet.blocks import Backbone
from core.space import SearchSpace, format_arch, parse_arch

# 2 searchable stages, 2 choices per factor: 2 x 2^3 x 2 x (2^3 + 2^6) = 2304 archs, 4096 encodings
SMALL = {
    "baseline": {"name": "small", "stages": [
        {"block": "K3C8S2", "fixed": True},
        {"block": "E3K3C8S2", "depth": 1},
        {"block": "E3K3C16S2", "depth": 2},
    ]},
    "ops": ["ir3", "dw"], "kernels": [3, 5], "se": [0.0, 0.25], "widths": [1.0, 1.5],
    "depth_deltas": [-1, 0],
}


@pytest.fixture(scope="module")
def samples(default_space):
    rng = np.random.default_rng(0)
    return [default_space.sample(rng) for _ in range(1000)]


def test_parse_format_round_trip(default_space, samples):
    for arch in samples:
        text = format_arch(arch)
        assert parse_arch(text) == arch
        assert format_arch(parse_arch(text)) == text
    assert len({str(a) for a in samples}) > 990  # the samples are actually diverse


def test_encode_decode_bijection(default_space, samples):
    space = default_space
    codes = set()
    for arch in samples:
        x = space.encode(arch)
        assert x.shape == (space.n_var,) and np.all(x >= space.xl) and np.all(x <= space.xu)
        assert space.decode(x) == arch
        codes.add(tuple(x))
    assert len(codes) == len(set(samples))  # distinct archs, distinct codes
    rng = np.random.default_rng(1)
    for _ in range(200):
        x = space.canonical(rng.integers(0, space.choices))
        np.testing.assert_array_equal(space.encode(space.decode(x)), x)


def test_samples_are_valid(default_space, samples):
    for arch in samples[:100]:
        assert default_space.parse(str(arch)) == arch


def test_named_archs_parse(default_space):
    space = default_space
    for arch in (space.smallest(), space.largest(), space.baseline):
        assert space.parse(str(arch)) == arch
    assert space.params(space.smallest()) < space.params(space.baseline) < space.params(space.largest())
    assert str(space.baseline).startswith("K3C32S2-DK3C16S1-E6K3C24S2-E6K3C24S1-E6K3C32S2")


def test_size_equals_brute_force():
    space = SearchSpace.from_dict(SMALL)
    assert space.n_var == 12
    distinct = {space.decode(np.array(x)) for x in itertools.product(*[range(n) for n in space.choices])}
    assert space.size() == len(distinct) == 2304


def test_params_match_torch(default_space):
    space, rng = default_space, np.random.default_rng(2)
    archs = [space.baseline, space.smallest(), space.largest()] + [space.sample(rng) for _ in range(3)]
    for arch in archs:
        net = Backbone(arch, space.tap_blocks(arch, (8, 16, 32)))
        assert space.params(arch) == sum(p.numel() for p in net.parameters()), str(arch)
    # MobileNetV2-1.0 features minus the final 1x1 conv to 1280 (which the baseline omits)
    assert space.params(space.baseline) == 2_223_872 - (320 * 1280 + 2 * 1280)


def test_blocks_cover_sampled_layers(default_space, samples):
    size = (192, 192)
    covered = set(default_space.blocks(size))
    for arch in samples[:200] + [default_space.smallest(), default_space.largest()]:
        missing = set(default_space.layers(arch, size)) - covered
        assert not missing, f"{arch}: {sorted(map(str, missing))[:3]}"


def test_malformed_arch_names_token_and_position():
    with pytest.raises(ValueError, match=r"'X3C16S1'.*block 1, character 8"):
        parse_arch("K3C32S2-X3C16S1-E6K3C24S2")
    with pytest.raises(ValueError, match=r"'K03C8S1'.*block 2"):
        parse_arch("K3C32S2-K3C16S1-K03C8S1")  # leading zero: not the one spelling
    with pytest.raises(ValueError, match="empty"):
        parse_arch("")


def _replace_block(arch_text: str, index: int, token: str) -> str:
    tokens = arch_text.split("-")
    tokens[index] = token
    return "-".join(tokens)


@pytest.mark.parametrize("change, message", [
    (lambda t: _replace_block(t, 2, "E6K3C40S2"), "channels must be one of"),  # stage 2 width
    (lambda t: _replace_block(t, 2, "E6K3C24S1"), "stride must be 2"),
    (lambda t: _replace_block(t, 0, "K5C32S2"), "fixed"),
    (lambda t: _replace_block(t, 2, "E6K9C24S2"), "op/kernel/SE not among"),
    (lambda t: t.rsplit("-", 1)[0], "arch ends first"),  # the last stage is missing
    (lambda t: t + "-E6K3C320S1-E6K3C320S1", "past the last stage"),
])
def test_arch_outside_space(default_space, change, message):
    text = change(str(default_space.baseline))
    with pytest.raises(ValueError, match=message) as info:
        default_space.parse(text)
    assert "outside the space" in str(info.value)


def test_space_config_errors(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "opz": ["ir3"]}))
    with pytest.raises(ValueError, match="'opz'"):
        SearchSpace.from_yaml(path)
    with pytest.raises(TypeError, match="kernels"):
        SearchSpace.from_dict({**SMALL, "kernels": "3"})
    with pytest.raises(TypeError, match="channel_divisor"):
        SearchSpace.from_dict({**SMALL, "channel_divisor": "8"})
    bad_stage = {"name": "x", "stages": [{"block": "K3C8S2", "depht": 2}]}
    with pytest.raises(ValueError, match="'depht'"):
        SearchSpace.from_dict({**SMALL, "baseline": bad_stage})
    with pytest.raises(ValueError, match="unknown op 'ir'"):
        SearchSpace.from_dict({**SMALL, "ops": ["ir"]})


def test_params_match_torch_every_op_kind():
    # the cost model agrees with torch for every op kind, with and without SE
    space = SearchSpace.from_dict(SMALL)
    for x in itertools.islice(itertools.product(*[range(n) for n in space.choices]), 0, 4096, 97):
        arch = space.decode(np.array(x))
        net = Backbone(arch, ())
        assert space.params(arch) == sum(p.numel() for p in net.parameters()), str(arch)
