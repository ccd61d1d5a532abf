"""Normalizing flows: ``transformed(base, bijector)`` and model builders."""

from ..distributions import Distribution as Distribution
from ._losses import nll_loss as nll_loss
from ._realnvp import realnvp as realnvp
from ._realnvp import realnvp_bijector as realnvp_bijector
from ._transformed import transformed as transformed
