"""Sampler benchmarking: targets with ground truth, the harness and the leaderboard.

``flowzoo bench samplers`` runs :func:`run_benchmark`; :data:`TARGETS` holds the targets
(Gaussian mixtures with exact diffusion and flow fields, Neal's funnel, Haario's banana, an
ill-conditioned Gaussian, and the sampling literature's ``mog40``, ``many_well32`` and
``blr_diabetes`` with their exact ``log_z``, and the posteriors ``logreg_breast_cancer`` and
``lgcp_synthetic`` with shipped reference samples); :func:`run_cell` scores one (target,
sampler, budget, seed) cell and :func:`leaderboard` reports them over the seeds.
"""

from ._harness import Settings as Settings
from ._harness import moment_errors as moment_errors
from ._harness import noise_floor as noise_floor
from ._harness import reference_size as reference_size
from ._harness import run_cell as run_cell
from ._harness import score_samples as score_samples
from ._harness import steps_and_options as steps_and_options
from ._leaderboard import leaderboard as leaderboard
from ._leaderboard import plot_target as plot_target
from ._leaderboard import ties as ties
from ._learned import learned_target as learned_target
from ._mixture import GaussianMixture as GaussianMixture
from ._mixture import diffused_score as diffused_score
from ._mixture import log_prob as mixture_log_prob
from ._mixture import path_velocity as path_velocity
from ._mixture import sde_score as sde_score
from ._report import DEFAULT_NFE as DEFAULT_NFE
from ._report import DEFAULT_SEEDS as DEFAULT_SEEDS
from ._report import LITERATURE_NFE as LITERATURE_NFE
from ._report import QUICK_NFE as QUICK_NFE
from ._report import QUICK_SETTINGS as QUICK_SETTINGS
from ._report import QUICK_TARGETS as QUICK_TARGETS
from ._report import default_budgets as default_budgets
from ._report import run_benchmark as run_benchmark
from ._targets import TARGETS as TARGETS
from ._targets import Reference as Reference
from ._targets import Target as Target
