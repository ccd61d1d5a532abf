"""Flow matching: probability paths, couplings, the CFM loss, the marginal-velocity oracle.

Time convention throughout: t=0 is noise ``x0 ~ N(0, I)``, t=1 is data ``x1``; affine paths
``x_t = sigma_t x0 + alpha_t x1``. Importing this package registers the ``"cfm"`` model.
"""

from . import _recipe  # noqa: E402,F401  (registers model "cfm")
from ._assignment import exact_assignment as exact_assignment
from ._convert import eps_from_velocity as eps_from_velocity
from ._convert import eps_from_x1 as eps_from_x1
from ._convert import score_from_eps as score_from_eps
from ._convert import velocity_from_eps as velocity_from_eps
from ._convert import velocity_from_x1 as velocity_from_x1
from ._convert import x1_from_eps as x1_from_eps
from ._convert import x1_from_velocity as x1_from_velocity
from ._coupling import COUPLINGS as COUPLINGS
from ._coupling import Coupling as Coupling
from ._coupling import exact_ot_coupling as exact_ot_coupling
from ._coupling import get_coupling as get_coupling
from ._coupling import independent_coupling as independent_coupling
from ._coupling import sinkhorn_coupling as sinkhorn_coupling
from ._coupling import squared_distances as squared_distances
from ._loss import cfm_loss as cfm_loss
from ._loss import guided_velocity as guided_velocity
from ._loss import label_context as label_context
from ._loss import sample_times as sample_times
from ._oracle import marginal_velocity as marginal_velocity
from ._oracle import posterior_mean as posterior_mean
from ._paths import PATHS as PATHS
from ._paths import Path as Path
from ._paths import affine_path as affine_path
from ._paths import cond_ot_path as cond_ot_path
from ._paths import cosine_path as cosine_path
from ._paths import get_path as get_path
from ._paths import polynomial_path as polynomial_path
from ._paths import ve_path as ve_path
from ._paths import vp_path as vp_path
from ._sample import SampleResult as SampleResult
from ._sample import sample as sample
from ._sinkhorn import sinkhorn_log_plan as sinkhorn_log_plan
