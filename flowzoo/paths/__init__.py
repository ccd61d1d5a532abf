"""The noising processes both continuous families share.

* Affine Gaussian paths ``x_t = sigma_t x0 + alpha_t x1`` for flow matching, **t=0 noise,
  t=1 data** (:class:`Path`, :func:`cond_ot_path`, :func:`vp_path`, :func:`ve_path`,
  :func:`cosine_path`, :func:`polynomial_path`) and the converters between velocity, data
  and noise predictions.
* Forward SDEs for score models, **t=0 data, t=T noise** (:class:`SDE`, :func:`ve_sde`,
  :func:`vp_sde`, :func:`subvp_sde`), and the one conversion of an SDE and a score into the
  probability-flow vector field and the reverse-time drift.

This package sits below the model families (``flow_matching``, ``score``, ``cnf``) so both
use one definition of each process.
"""

from ._affine import PATHS as PATHS
from ._affine import Path as Path
from ._affine import affine_path as affine_path
from ._affine import base_scale as base_scale
from ._affine import brownian_bridge_path as brownian_bridge_path
from ._affine import cond_ot_path as cond_ot_path
from ._affine import cosine_path as cosine_path
from ._affine import expand_time as expand_time
from ._affine import gaussian_schedule as gaussian_schedule
from ._affine import get_path as get_path
from ._affine import polynomial_path as polynomial_path
from ._affine import stochastic_interpolant_path as stochastic_interpolant_path
from ._affine import ve_path as ve_path
from ._affine import vp_path as vp_path
from ._convert import eps_from_velocity as eps_from_velocity
from ._convert import eps_from_x1 as eps_from_x1
from ._convert import score_from_eps as score_from_eps
from ._convert import velocity_from_eps as velocity_from_eps
from ._convert import velocity_from_x1 as velocity_from_x1
from ._convert import x1_from_eps as x1_from_eps
from ._convert import x1_from_velocity as x1_from_velocity
from ._flows import probability_flow as probability_flow
from ._flows import reverse_drift as reverse_drift
from ._flows import sde_to_flow_time as sde_to_flow_time
from ._sdes import SDE as SDE
from ._sdes import SDES as SDES
from ._sdes import bcast as bcast
from ._sdes import get_sde as get_sde
from ._sdes import subvp_sde as subvp_sde
from ._sdes import ve_sde as ve_sde
from ._sdes import vp_sde as vp_sde
