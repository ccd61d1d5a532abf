"""flowzoo: normalizing flows, continuous flows and score models in JAX as pure functions."""

from importlib.metadata import PackageNotFoundError, version

from . import bijectors, data, distributions, flows, metrics, nets
from .bijectors import Bijector
from .distributions import Distribution
from .flows import realnvp, transformed

_LAZY = (
    "checkpoint",
    "cnf",
    "flow_matching",
    "integrate",
    "malloc",
    "paths",
    "plots",
    "prng",
    "samplers",
    "score",
    "train",
    "zoo",
)


def __getattr__(name: str):
    """Import the heavier subpackages (diffrax, orbax, matplotlib users) on first access."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'flowzoo' has no attribute {name!r}")


try:
    __version__ = version("flowzoo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Bijector",
    "Distribution",
    "__version__",
    "bijectors",
    "data",
    "metrics",
    "distributions",
    "flows",
    "nets",
    "realnvp",
    "transformed",
]
