"""The one place flowzoo calls diffrax: ODE and SDE solves with NFE statistics.

CNF likelihoods, flow-matching sampling, the probability-flow ODE and the reverse SDE all
call these functions rather than wrapping diffrax again.
"""

from ._ode import ADJOINTS as ADJOINTS
from ._ode import RK4 as RK4
from ._ode import SOLVERS as SOLVERS
from ._ode import ODESolution as ODESolution
from ._ode import solve_ode as solve_ode
from ._ode import solver_stages as solver_stages
from ._sde import SDESolution as SDESolution
from ._sde import em_step as em_step
from ._sde import solve_sde as solve_sde
