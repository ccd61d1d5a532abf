"""Normalizing flows: ``transformed(base, bijector)``, model builders and the NLL loss.

Every builder returns a :class:`~flowzoo.distributions.Distribution`. Flow samplers for
unnormalised densities (a flow trained by reverse KL, then importance weights):
:func:`reverse_kl_fit`, :func:`reverse_kl_sample` and :data:`FLOW_SAMPLERS`, which
``import flowzoo.zoo`` registers in :data:`flowzoo.samplers.SAMPLERS`. They use
:mod:`flowzoo.samplers` (and so diffrax), so they load on first access and ``import
flowzoo`` stays light.
"""

from typing import TYPE_CHECKING

from ..distributions import Distribution as Distribution
from ._autoregressive import AFFINE_ORIENTATION as AFFINE_ORIENTATION
from ._autoregressive import autoregressive_bijector as autoregressive_bijector
from ._autoregressive import iaf as iaf
from ._autoregressive import maf as maf
from ._dequant import variational_dequantizer as variational_dequantizer
from ._glow import glow as glow
from ._glow import glow_bijector as glow_bijector
from ._image import EVAL_SEED as EVAL_SEED
from ._image import dequantized as dequantized
from ._image_coupling import image_coupling_flow as image_coupling_flow
from ._losses import nll_loss as nll_loss
from ._realnvp import realnvp as realnvp
from ._realnvp import realnvp_bijector as realnvp_bijector
from ._realnvp_image import realnvp_image as realnvp_image
from ._realnvp_image import realnvp_image_bijector as realnvp_image_bijector
from ._transformed import transformed as transformed

_REVERSE_KL = (
    "FLOW_SAMPLERS",
    "FLOW_SIZES",
    "ReverseKLResult",
    "reverse_kl_fit",
    "reverse_kl_flow",
    "reverse_kl_sample",
)

if TYPE_CHECKING:  # what static tools (type checkers, the API docs) see
    from ._reverse_kl import FLOW_SAMPLERS as FLOW_SAMPLERS
    from ._reverse_kl import FLOW_SIZES as FLOW_SIZES
    from ._reverse_kl import ReverseKLResult as ReverseKLResult
    from ._reverse_kl import reverse_kl_fit as reverse_kl_fit
    from ._reverse_kl import reverse_kl_flow as reverse_kl_flow
    from ._reverse_kl import reverse_kl_sample as reverse_kl_sample


def __getattr__(name: str):
    """The flow samplers' names, imported from :mod:`._reverse_kl` on first access."""
    if name in _REVERSE_KL:
        from . import _reverse_kl

        return getattr(_reverse_kl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
