"""Normalizing flows: ``transformed(base, bijector)``, model builders and the NLL loss.

Every builder returns a :class:`~flowzoo.distributions.Distribution`.
"""

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
