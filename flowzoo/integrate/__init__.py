"""The one place flowzoo calls diffrax: ODE and SDE solves with NFE statistics, the
divergence of a vector field and the continuous-time log-likelihood.

CNF likelihoods, flow-matching sampling, the probability-flow ODE and the reverse SDE all
call these functions rather than wrapping diffrax again. Time convention: the caller's
(each caller states its own; see ``docs/concepts.md``).
"""

from ._divergence import DIVERGENCES as DIVERGENCES
from ._divergence import PROBES as PROBES
from ._divergence import DivergenceConfig as DivergenceConfig
from ._divergence import check_divergence as check_divergence
from ._divergence import divergence_exact as divergence_exact
from ._divergence import divergence_hutchinson as divergence_hutchinson
from ._divergence import sample_probes as sample_probes
from ._likelihood import ODELogProb as ODELogProb
from ._likelihood import ode_log_prob as ode_log_prob
from ._ode import ADJOINTS as ADJOINTS
from ._ode import RK4 as RK4
from ._ode import SOLVERS as SOLVERS
from ._ode import ODESolution as ODESolution
from ._ode import SolverConfig as SolverConfig
from ._ode import solve_ode as solve_ode
from ._ode import solver_adaptive as solver_adaptive
from ._ode import solver_stages as solver_stages
from ._sde import SDESolution as SDESolution
from ._sde import em_step as em_step
from ._sde import solve_sde as solve_sde
