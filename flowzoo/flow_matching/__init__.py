"""Flow matching: probability paths, couplings, the CFM loss, the marginal-velocity oracle.

Time convention throughout: t=0 is noise ``x0 ~ N(0, I)``, t=1 is data ``x1``; affine paths
``x_t = sigma_t x0 + alpha_t x1`` (:mod:`flowzoo.paths`). A trained field is a density through
:func:`distribution` (its CNF, with the path's own t=0 marginal as base).
"""

from ._assignment import exact_assignment as exact_assignment
from ._assignment import host_assignment as host_assignment
from ._assignment import solver_order as solver_order
from ._coupling import COUPLINGS as COUPLINGS
from ._coupling import Coupling as Coupling
from ._coupling import exact_ot_coupling as exact_ot_coupling
from ._coupling import get_coupling as get_coupling
from ._coupling import independent_coupling as independent_coupling
from ._coupling import sinkhorn_coupling as sinkhorn_coupling
from ._coupling import squared_distances as squared_distances
from ._distribution import distribution as distribution
from ._loss import cfm_loss as cfm_loss
from ._loss import guided_velocity as guided_velocity
from ._loss import label_context as label_context
from ._loss import sample_times as sample_times
from ._oracle import marginal_velocity as marginal_velocity
from ._oracle import posterior_mean as posterior_mean
from ._pipeline import OTBatches as OTBatches
from ._pipeline import ot_paired_batches as ot_paired_batches
from ._reflow import reflow as reflow
from ._reflow import reflow_pairs as reflow_pairs
from ._reflow import straightness as straightness
from ._sinkhorn import sinkhorn_log_plan as sinkhorn_log_plan
