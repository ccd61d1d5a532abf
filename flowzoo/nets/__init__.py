"""Neural networks (the only place flax.linen is used), exposed as ``Network(init, apply)``."""

from ._mlp import Network as Network
from ._mlp import activation as activation
from ._mlp import mlp as mlp
