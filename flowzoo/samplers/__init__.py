"""Samplers: the ``Sampler(init, step)`` protocol and batched Langevin/SDE/ODE samplers.

Time-homogeneous chains take ``score_fn(x)`` (ULA) or ``log_prob_fn(x)`` (MALA);
time-dependent samplers take ``fn(t, x)`` in the SDE convention, t=0 data, t=T noise
(annealed Langevin takes ``fn(sigma, x)``). All act on ``(chains, *event)``.
"""

from ._annealed import AnnealedInfo as AnnealedInfo
from ._annealed import AnnealedState as AnnealedState
from ._annealed import annealed_langevin as annealed_langevin
from ._annealed import denoise as denoise
from ._base import ChainResult as ChainResult
from ._base import Sampler as Sampler
from ._base import run_chain as run_chain
from ._mala import MALAInfo as MALAInfo
from ._mala import MALAState as MALAState
from ._mala import mala as mala
from ._pc import langevin_corrector as langevin_corrector
from ._pc import pc_sample as pc_sample
from ._pf_ode import ODELogProb as ODELogProb
from ._pf_ode import bits_per_dim as bits_per_dim
from ._pf_ode import pf_ode_log_prob as pf_ode_log_prob
from ._pf_ode import pf_ode_sample as pf_ode_sample
from ._reverse_sde import reverse_sde_sample as reverse_sde_sample
from ._ula import ULAInfo as ULAInfo
from ._ula import ULAState as ULAState
from ._ula import ula as ula
from ._ula import ula_sample as ula_sample
