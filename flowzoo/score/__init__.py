"""Score and energy models: SDEs (t=0 data, t=T noise), score networks, score-matching
losses, contrastive divergence, and the probability-flow conversion.

Importing this package registers the ``ncsn`` and ``ebm`` model builders
(:mod:`flowzoo.score._recipe`) with :func:`flowzoo.train.register_model`.
"""

from . import _recipe  # noqa: E402,F401  (registers model builders)
from ._cd import PCD as PCD
from ._cd import PCDState as PCDState
from ._cd import cd_loss as cd_loss
from ._cd import persistent_cd as persistent_cd
from ._cd import short_run_langevin as short_run_langevin
from ._dsm_losses import dsm_loss as dsm_loss
from ._dsm_losses import geometric_sigmas as geometric_sigmas
from ._dsm_losses import ncsn_loss as ncsn_loss
from ._dsm_losses import sde_dsm_loss as sde_dsm_loss
from ._energy import score_from_energy as score_from_energy
from ._energy import score_from_log_prob as score_from_log_prob
from ._nets import energy_network as energy_network
from ._nets import noise_conditional_score_network as noise_conditional_score_network
from ._nets import sde_score_network as sde_score_network
from ._pf_ode import probability_flow as probability_flow
from ._pf_ode import reverse_drift as reverse_drift
from ._sdes import SDE as SDE
from ._sdes import subvp_sde as subvp_sde
from ._sdes import ve_sde as ve_sde
from ._sdes import vp_sde as vp_sde
from ._sm_losses import exact_score_matching_loss as exact_score_matching_loss
from ._sm_losses import jacobian_trace as jacobian_trace
from ._sm_losses import sliced_score_matching_loss as sliced_score_matching_loss
