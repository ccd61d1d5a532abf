"""One registry for every sampler, with one call shape and one info record.

``run(name, key, problem, n, num_steps=..., **options) -> (samples, SamplerInfo)``. A
:class:`Problem` carries what samplers may use; each registered sampler states which fields
it needs, so a wrong pairing fails with a message naming the missing field. Markov chains
(ULA, MALA, annealed Langevin) keep their ``Sampler(init, step)`` form underneath; the
integrators (reverse SDE, predictor-corrector, probability-flow and flow-matching ODEs) are
single calls. Every entry reports the number of function evaluations (NFE: evaluations of
the score, log-density or vector field on the whole batch) and, for chains with an
accept/reject step, the mean acceptance rate (NaN for samplers without one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key
from ..integrate import SOLVERS, SolverConfig
from ..paths import SDE, Path
from ._base import run_chain
from ._ddim import ddim_sample
from ._dpm_solver import dpm_solver_2m_sample
from ._edm import edm_heun_sample
from ._exp_euler import exp_euler_sample
from ._mala import mala
from ._ode import flow_ode_sample, pf_ode_sample
from ._pc import pc_sample
from ._reverse_sde import reverse_sde_sample
from ._ula import ula


class Problem(NamedTuple):
    """What a sampler may be given; leave the fields a sampler does not need as ``None``.

    * ``event_shape``: the shape of one sample.
    * ``log_prob(x) -> (n,)``: unnormalised log-density (MALA; ULA through its gradient).
    * ``score(x) -> (n, *event)``: ``grad log p`` (ULA; derived from ``log_prob`` if absent).
    * ``init(key, n) -> (n, *event)``: initial positions of Markov chains.
    * ``sde`` and ``score_t(t, x)``: a forward SDE and the score of its marginal ``p_t``
      (SDE time: t=0 data, t=T noise) for annealed Langevin, reverse SDE, PC and PF-ODE.
    * ``path`` and ``velocity(t, x)``: a flow-matching path and its marginal velocity
      (flow-matching time: t=0 noise, t=1 data) for the flow ODE solvers.
    """

    event_shape: tuple[int, ...]
    log_prob: Callable[[Batch], Array] | None = None
    score: Callable[[Batch], Batch] | None = None
    init: Callable[[Key, int], Batch] | None = None
    sde: SDE | None = None
    score_t: Callable[[Array, Batch], Batch] | None = None
    path: Path | None = None
    velocity: Callable[[Array, Batch], Batch] | None = None


class SamplerInfo(NamedTuple):
    """``nfe``: int32, function evaluations of the whole batch; ``acceptance_rate``: float32
    mean acceptance of an accept/reject chain, NaN for every other sampler; ``trace``: for
    Markov chains run with ``trace=k``, the positions at ``k`` evenly spaced steps
    ``(k, n, *event)`` (for effective sample sizes), else ``None``."""

    nfe: Array
    acceptance_rate: Array
    trace: Array | None = None


class SamplerSpec(NamedTuple):
    """A registry entry: the function, the :class:`Problem` fields it needs, its kind
    (``"chain"``, ``"sde"`` or ``"ode"``) and the NFE of one step (for budgets)."""

    fn: Callable[..., tuple[Batch, SamplerInfo]]
    needs: tuple[str, ...]
    kind: str
    nfe_per_step: int


def _info(nfe, acceptance=jnp.nan, trace=None) -> SamplerInfo:
    return SamplerInfo(jnp.asarray(nfe, jnp.int32), jnp.asarray(acceptance, jnp.float32), trace)


def _thin(num_steps: int, trace: int) -> int:
    if trace and num_steps % trace:
        raise ValueError(f"trace={trace} must divide num_steps={num_steps}")
    return num_steps // trace if trace else num_steps


def _score(problem: Problem) -> Callable[[Batch], Batch]:
    if problem.score is not None:
        return problem.score
    return lambda x: jax.grad(lambda y: jnp.sum(problem.log_prob(y)))(x)


def _ula(key, problem, n, num_steps, *, step_size=0.01, temperature=1.0, trace=0):
    k0, k1 = jax.random.split(key)
    score = _score(problem)
    chain = ula(lambda x: score(x) / temperature, step_size)
    res = run_chain(chain, k1, problem.init(k0, n), num_steps, thin=_thin(num_steps, trace))
    return res.state.position, _info(num_steps, trace=res.positions if trace else None)


def _mala(key, problem, n, num_steps, *, step_size=0.01, temperature=1.0, trace=0):
    k0, k1 = jax.random.split(key)
    chain = mala(lambda x: problem.log_prob(x) / temperature, step_size)
    thin = _thin(num_steps, trace)
    res = run_chain(chain, k1, problem.init(k0, n), num_steps, thin=thin)
    # run_chain keeps the info of the last step of each block: the acceptance of those
    # steps (every step when trace is 0 and thin is the whole run: one block, one step)
    accept = jnp.mean(res.info.acceptance_rate)
    return res.state.position, _info(num_steps + 1, accept, res.positions if trace else None)


def _annealed(
    key, problem, n, num_steps, *, num_levels=10, relative_step=2.0, max_step=1.0, t_min=1e-3
):
    """Annealed Langevin on the SDE's marginals: ``num_levels`` times geometric from T to
    ``t_min``; level i runs ``num_steps / num_levels`` Langevin steps
    ``x + a_i/2 score(t_i, x) + sqrt(a_i) z`` on ``p_{t_i}`` (Song & Ermon 2019).

    ``a_i = min(relative_step * sigma_i^2, max_step)`` with ``sigma_i`` the marginal std:
    NCSN's ``a_i = eps sigma_i^2 / sigma_L^2`` made scale-free (``eps = relative_step
    sigma_L^2``), capped because on the VP SDE every marginal has variance near 1, where an
    uncapped step at the top level would be unstable.
    """
    sde = problem.sde
    if num_steps % num_levels:
        raise ValueError(f"num_steps ({num_steps}) must be a multiple of num_levels ({num_levels})")
    ts = jnp.geomspace(sde.T, t_min, num_levels)
    sigmas = sde.marginal(jnp.zeros((num_levels,)), ts)[1]
    steps = jnp.minimum(relative_step * sigmas**2, max_step)
    per_level = num_steps // num_levels
    k0, k1 = jax.random.split(key)

    def level(x, i):
        chain = ula(lambda y: problem.score_t(ts[i], y), steps[i] / 2)
        res = run_chain(chain, jax.random.fold_in(k1, i), x, per_level, thin=per_level)
        return res.state.position, None

    x0 = sde.prior_sample(k0, (n, *problem.event_shape))
    x, _ = jax.lax.scan(level, x0, jnp.arange(num_levels))
    return x, _info(num_steps)


def _reverse_sde(key, problem, n, num_steps, *, t_min=1e-3, denoise=True):
    shape = (n, *problem.event_shape)
    x = reverse_sde_sample(
        problem.sde, problem.score_t, key, shape, num_steps, t_min=t_min, denoise=denoise
    )
    return x, _info(num_steps)


def _pc(key, problem, n, num_steps, *, num_corrector=1, snr=0.16, t_min=1e-3):
    shape = (n, *problem.event_shape)
    x = pc_sample(
        problem.sde,
        problem.score_t,
        key,
        shape,
        num_steps,
        num_corrector=num_corrector,
        snr=snr,
        t_min=t_min,
    )
    return x, _info(num_steps * (1 + num_corrector) - num_corrector)


def _fast(fn, nfe_of=lambda steps: steps, **fixed):
    """A registry entry for a fast diffusion solver ``fn(sde, score_fn, key, shape, steps)``;
    ``nfe_of(num_steps)`` is its evaluation count."""

    def run(key, problem, n, num_steps, **options):
        shape = (n, *problem.event_shape)
        x = fn(problem.sde, problem.score_t, key, shape, num_steps, **{**fixed, **options})
        return x, _info(nfe_of(num_steps))

    return run


def _ode_solver(name: str, num_steps: int | None, rtol: float, atol: float) -> SolverConfig:
    adaptive = name in ("tsit5", "dopri5")
    return SolverConfig(name, None if adaptive else num_steps, rtol, atol)


def _pf_ode(solver: str):
    def run(key, problem, n, num_steps=None, *, t_min=1e-3, rtol=1e-5, atol=1e-5):
        out = pf_ode_sample(
            problem.sde,
            problem.score_t,
            key,
            (n, *problem.event_shape),
            t_min=t_min,
            solver=_ode_solver(solver, num_steps, rtol, atol),
        )
        return out.samples, _info(out.nfe)

    return run


def _flow_ode(solver: str):
    def run(key, problem, n, num_steps=None, *, t0=0.0, t1=1.0, rtol=1e-5, atol=1e-5):
        out = flow_ode_sample(
            problem.velocity,
            key,
            (n, *problem.event_shape),
            path=problem.path,
            solver=_ode_solver(solver, num_steps, rtol, atol),
            t0=t0,
            t1=t1,
        )
        return out.samples, _info(out.nfe)

    return run


def _edm_nfe(num_steps: int) -> int:
    return 2 * num_steps - 1  # Heun steps, then one Euler step to sigma = 0


_STAGES = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "tsit5": 6, "dopri5": 6}

SAMPLERS: dict[str, SamplerSpec] = {
    "ula": SamplerSpec(_ula, ("init", "score|log_prob"), "chain", 1),
    "mala": SamplerSpec(_mala, ("init", "log_prob"), "chain", 1),
    "annealed_langevin": SamplerSpec(_annealed, ("sde", "score_t"), "chain", 1),
    "reverse_sde": SamplerSpec(_reverse_sde, ("sde", "score_t"), "sde", 1),
    "pc": SamplerSpec(_pc, ("sde", "score_t"), "sde", 2),
    "ddim": SamplerSpec(_fast(ddim_sample), ("sde", "score_t"), "ode", 1),
    "ddim_stochastic": SamplerSpec(_fast(ddim_sample, eta=1.0), ("sde", "score_t"), "sde", 1),
    "dpm_solver_2m": SamplerSpec(_fast(dpm_solver_2m_sample), ("sde", "score_t"), "ode", 1),
    "edm_heun": SamplerSpec(_fast(edm_heun_sample, _edm_nfe), ("sde", "score_t"), "ode", 2),
    "edm_heun_churn": SamplerSpec(
        _fast(edm_heun_sample, _edm_nfe, churn=10.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
        ("sde", "score_t"),
        "sde",
        2,
    ),
    "exp_euler": SamplerSpec(_fast(exp_euler_sample), ("sde", "score_t"), "sde", 1),
}
for _s in SOLVERS:
    SAMPLERS[f"pf_ode_{_s}"] = SamplerSpec(_pf_ode(_s), ("sde", "score_t"), "ode", _STAGES[_s])
    SAMPLERS[f"flow_ode_{_s}"] = SamplerSpec(_flow_ode(_s), ("velocity",), "ode", _STAGES[_s])
"""Every sampler by name. Fixed-step ODE entries take ``num_steps``; the adaptive ones
(``*_tsit5``, ``*_dopri5``) ignore it and solve to ``rtol``/``atol``."""


def register_sampler(name: str, spec: SamplerSpec) -> None:
    """Add a sampler to :data:`SAMPLERS` (for samplers defined outside flowzoo)."""
    if name in SAMPLERS:
        raise ValueError(f"a sampler named {name!r} is already registered")
    SAMPLERS[name] = spec


def supports(name: str, problem: Problem) -> bool:
    """Whether ``problem`` sets every field the sampler ``name`` needs."""
    return not _missing(SAMPLERS[name], problem)


def _missing(spec: SamplerSpec, problem: Problem) -> list[str]:
    missing = []
    for need in spec.needs:
        if all(getattr(problem, alt) is None for alt in need.split("|")):
            missing.append(need.replace("|", " or "))
    return missing


def run(
    name: str, key: Key, problem: Problem, n: int, num_steps: int | None = None, **options: Any
) -> tuple[Batch, SamplerInfo]:
    """Draw ``n`` samples ``(n, *problem.event_shape)`` with the sampler ``name``.

    Args:
      name: a key of :data:`SAMPLERS`.
      key: PRNG key.
      problem: the :class:`Problem` (fields the sampler needs must be set).
      n: number of samples (chains).
      num_steps: steps of the chain or fixed-step integrator (ignored by adaptive ODEs).
      **options: the sampler's own settings (``step_size``, ``t_min``, ``snr``, ...).

    Returns:
      ``(samples, SamplerInfo)``. Use under ``jax.jit`` with ``name``, ``n``, ``num_steps``
      and the options static (e.g. ``functools.partial``).
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    spec = SAMPLERS[name]
    missing = _missing(spec, problem)
    if missing:
        raise ValueError(f"sampler {name!r} needs Problem fields {missing}, which are None")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    adaptive = spec.kind == "ode" and name.endswith(("tsit5", "dopri5"))
    bad_steps = num_steps is None or isinstance(num_steps, bool) or int(num_steps) < 1
    if not adaptive and bad_steps:
        raise ValueError(f"sampler {name!r} needs num_steps >= 1, got {num_steps!r}")
    return spec.fn(key, problem, n, num_steps, **options)
