"""facenas search space and supernet. Public API::

    from supernet import SearchSpace, Supernet, StrictFairSampler, UniformSampler
"""

from supernet.space import Arch, Block, LayerKey, SearchSpace, parse_arch, parse_block

__all__ = ["Arch", "Block", "LayerKey", "SearchSpace", "parse_arch", "parse_block"]
