"""facenas search space and supernet. Public API::

    from supernet import SearchSpace, Supernet, StrictFairSampler, UniformSampler, recalibrate_bn

`core.space` and the samplers import no torch; `Supernet` and `recalibrate_bn` are imported on
first use, so ``import core.space`` stays torch-free.
"""

from supernet.samplers import StrictFairSampler, UniformSampler
from core.space import Arch, Block, LayerKey, SearchSpace, parse_arch, parse_block

__all__ = ["Arch", "Block", "LayerKey", "SearchSpace", "StrictFairSampler", "Supernet",
           "UniformSampler", "parse_arch", "parse_block", "recalibrate_bn"]


def __getattr__(name: str):
    if name == "Supernet":
        from supernet.net import Supernet

        return Supernet
    if name == "recalibrate_bn":
        from supernet.bn import recalibrate_bn

        return recalibrate_bn
    raise AttributeError(f"module 'supernet' has no attribute {name!r}")
