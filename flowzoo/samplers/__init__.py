"""Samplers: Markov chains as ``Sampler(init, step)`` and SDE/ODE integrators, all reachable
by name through one registry (:func:`run`, :data:`SAMPLERS`) that reports the NFE.

Samplers act on closures, never on a model tuple: time-homogeneous chains take
``score_fn(x)`` (ULA) or ``log_prob_fn(x)`` (MALA); time-dependent samplers take ``fn(t, x)``
in the SDE convention, t=0 data, t=T noise (annealed Langevin takes ``fn(sigma, x)``); the
flow ODE takes a velocity ``v(t, x)`` in the flow-matching convention, t=0 noise, t=1 data.
All act on batches of chains ``(chains, *event)``.

Fast diffusion solvers (DDIM, DPM-Solver++(2M), the EDM Heun sampler, exponential-integrator
Euler) take the SDE and its time-dependent score like the reverse SDE, and map them onto
their papers' parametrisations (noise / data prediction, log-SNR, EDM sigma) through
:mod:`._denoise`.

Tuned samplers for unnormalised densities: blackjax's HMC and NUTS with Stan's window
adaptation per chain (:func:`hmc_family_sample`), MALA with dual-averaging step adaptation
(:func:`mala_adapted_sample`) and sequential Monte Carlo from a Gaussian reference with its
``log Z`` (:func:`smc_sample`).
"""

from ._adapt import AdaptedResult as AdaptedResult
from ._adapt import mala_adapted_sample as mala_adapted_sample
from ._annealed import AnnealedInfo as AnnealedInfo
from ._annealed import AnnealedState as AnnealedState
from ._annealed import annealed_langevin as annealed_langevin
from ._annealed import denoise as denoise
from ._base import ChainResult as ChainResult
from ._base import Sampler as Sampler
from ._base import run_chain as run_chain
from ._ddim import ddim_sample as ddim_sample
from ._dpm_solver import dpm_solver_2m_sample as dpm_solver_2m_sample
from ._edm import edm_heun_sample as edm_heun_sample
from ._exp_euler import exp_euler_sample as exp_euler_sample
from ._hmc import hmc_family_sample as hmc_family_sample
from ._mala import MALAInfo as MALAInfo
from ._mala import MALAState as MALAState
from ._mala import mala as mala
from ._ode import ODESample as ODESample
from ._ode import flow_ode_sample as flow_ode_sample
from ._ode import pf_ode_sample as pf_ode_sample
from ._pc import langevin_corrector as langevin_corrector
from ._pc import pc_sample as pc_sample
from ._registry import KINDS as KINDS
from ._registry import SAMPLERS as SAMPLERS
from ._registry import Needs as Needs
from ._registry import Problem as Problem
from ._registry import SamplerInfo as SamplerInfo
from ._registry import SamplerSpec as SamplerSpec
from ._registry import missing_fields as missing_fields
from ._registry import register_sampler as register_sampler
from ._registry import run as run
from ._registry import supports as supports
from ._reverse_sde import reverse_sde_sample as reverse_sde_sample
from ._smc import SMCResult as SMCResult
from ._smc import smc_sample as smc_sample
from ._smc import systematic_resample as systematic_resample
from ._ula import ULAInfo as ULAInfo
from ._ula import ULAState as ULAState
from ._ula import ula as ula
from ._ula import ula_sample as ula_sample
