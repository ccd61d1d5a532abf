"""flowzoo: normalizing flows, continuous flows and score models in JAX as pure functions."""

from importlib.metadata import PackageNotFoundError, version

from . import bijectors, distributions, flows, nets
from .bijectors import Bijector
from .distributions import Distribution
from .flows import realnvp, transformed

try:
    __version__ = version("flowzoo")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = [
    "Bijector",
    "Distribution",
    "__version__",
    "bijectors",
    "distributions",
    "flows",
    "nets",
    "realnvp",
    "transformed",
]
