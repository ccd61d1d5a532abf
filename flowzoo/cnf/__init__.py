"""Continuous normalizing flows on diffrax (exact and Hutchinson divergence) and residual flows.

Time convention (flow matching): t=0 is the N(0, I) base, t=1 is data. Importing this package
registers the ``"ffjord"`` model for ``flowzoo train``.
"""

from . import _recipe as _recipe  # registers the "ffjord" model
from ._cnf import CNF as CNF
from ._cnf import DIVERGENCES as DIVERGENCES
from ._cnf import CNFStats as CNFStats
from ._cnf import cnf as cnf
from ._divergence import PROBES as PROBES
from ._divergence import divergence_exact as divergence_exact
from ._divergence import divergence_hutchinson as divergence_hutchinson
from ._divergence import sample_probe as sample_probe
from ._losses import cnf_nll_loss as cnf_nll_loss
from ._ode_likelihood import ODELogProbEstimate as ODELogProbEstimate
from ._ode_likelihood import divergence_hutchinson_probes as divergence_hutchinson_probes
from ._ode_likelihood import ode_log_prob as ode_log_prob
from ._quantized import quantized_trainable as quantized_trainable
from ._residual import ESTIMATORS as ESTIMATORS
from ._residual import ResidualBlock as ResidualBlock
from ._residual import power_series_terms as power_series_terms
from ._residual import residual_block as residual_block
from ._spectral import lipswish as lipswish
from ._spectral import refresh_power_vectors as refresh_power_vectors
from ._spectral import spectral_norm as spectral_norm
