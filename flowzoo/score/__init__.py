"""Score and energy models: score networks, score-matching losses, contrastive divergence,
and the probability-flow ODE model.

Time convention: the SDEs' (:mod:`flowzoo.paths`), **t=0 data, t=T noise**. A score model's
density is its probability-flow ODE, :func:`pf_ode_distribution` (a
:class:`~flowzoo.distributions.Distribution`); its samplers are in :mod:`flowzoo.samplers`.
"""

from ._cd import cd_loss as cd_loss
from ._cd import cd_objective as cd_objective
from ._cd import short_run_langevin as short_run_langevin
from ._cd import uniform_init as uniform_init
from ._dsm_losses import dsm_loss as dsm_loss
from ._dsm_losses import geometric_sigmas as geometric_sigmas
from ._dsm_losses import guided_score as guided_score
from ._dsm_losses import ncsn_loss as ncsn_loss
from ._dsm_losses import sde_dsm_loss as sde_dsm_loss
from ._energy import score_from_energy as score_from_energy
from ._energy import score_from_log_prob as score_from_log_prob
from ._nets import energy_network as energy_network
from ._nets import noise_conditional_score_network as noise_conditional_score_network
from ._nets import sde_score_network as sde_score_network
from ._pf_ode import TIME_CHANGES as TIME_CHANGES
from ._pf_ode import log_time as log_time
from ._pf_ode import pf_ode_distribution as pf_ode_distribution
from ._pf_ode import sde_prior as sde_prior
from ._sm_losses import exact_score_matching_loss as exact_score_matching_loss
from ._sm_losses import sliced_score_matching_loss as sliced_score_matching_loss
