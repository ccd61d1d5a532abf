"""One registry for every sampler, with one call shape and one info record.

``run(name, key, problem, n, num_steps=..., **options) -> (samples, SamplerInfo)``. A
:class:`Problem` carries what samplers may use; each registered sampler states which fields
it needs, so a wrong pairing fails with a message naming the missing field. Each entry also
states whether it is adaptive, the NFE a run of ``num_steps`` costs and the ``num_steps`` a
budget of evaluations buys (:class:`SamplerSpec`); callers read these, never the name.
Markov chains (ULA, MALA, annealed Langevin) keep their ``Sampler(init, step)`` form
underneath; the integrators (reverse SDE, predictor-corrector, probability-flow and
flow-matching ODEs) are single calls. Every entry reports the number of function
evaluations (NFE: evaluations of the score, log-density or vector field on the whole batch)
and, for chains with an accept/reject step, the mean acceptance rate over every step and
chain (NaN for samplers without one). The tuned entries: ``hmc``, ``nuts`` (blackjax's
kernels) and ``mala_adapted`` adapt each chain over a warm-up, report the gradients a chain
spent (warm-up included, averaged over chains) and the acceptance after the warm-up;
``smc`` anneals from the problem's Gaussian reference and reports ``log Z``
(``SamplerInfo.log_z``, ``ess``); so do ``flow_realnvp``, ``flow_spline`` and ``flow_iaf``
(kind ``"flow"``: a flow trained by reverse KL, then importance weights), which
:mod:`flowzoo.flows` defines and ``import flowzoo.zoo`` registers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._types import Array, Batch, Key
from ..integrate import SOLVERS, SolverConfig, solver_adaptive
from ..paths import SDE, Path
from ._adapt import mala_adapted_sample
from ._base import run_chain
from ._ddim import ddim_sample
from ._dpm_solver import dpm_solver_2m_sample
from ._edm import edm_heun_sample
from ._exp_euler import exp_euler_sample
from ._hmc import hmc_family_sample
from ._mala import mala
from ._ode import flow_ode_sample, pf_ode_sample
from ._pc import pc_sample
from ._reverse_sde import reverse_sde_sample
from ._smc import SMC_MOVES, smc_sample
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
    * ``reference_scale``: ``s``, a float or an array broadcastable to ``event_shape``: the
      normalised reference ``N(0, diag(s^2))`` that SMC anneals from (the prior of a
      posterior, a broad Gaussian otherwise); its ``log Z`` estimates are of ``log_prob``.
    """

    event_shape: tuple[int, ...]
    log_prob: Callable[[Batch], Array] | None = None
    score: Callable[[Batch], Batch] | None = None
    init: Callable[[Key, int], Batch] | None = None
    sde: SDE | None = None
    score_t: Callable[[Array, Batch], Batch] | None = None
    path: Path | None = None
    velocity: Callable[[Array, Batch], Batch] | None = None
    reference_scale: float | Array | None = None


class SamplerInfo(NamedTuple):
    """``nfe``: int32, function evaluations of the whole batch; ``acceptance_rate``: float32,
    for an accept/reject chain the acceptance probability ``min(1, exp(log ratio))`` averaged
    over every step and chain (whatever ``trace``), NaN for every other sampler; ``trace``: for
    Markov chains run with ``trace=k``, the positions at ``k`` evenly spaced steps
    ``(k, n, *event)`` (for effective sample sizes), else ``None``; ``log_z``: float32, a
    sampler's estimate of ``log Z`` of the unnormalised ``log_prob`` (SMC, flows), else NaN;
    ``ess``: float32, the effective sample size of the importance weights behind the
    returned samples (SMC: at the last temperature, before the final resampling), else NaN.
    Adapted chains (``hmc``, ``nuts``, ``mala_adapted``) average ``acceptance_rate`` over
    the sampling steps after their warm-up; their ``nfe`` is the gradient evaluations a
    chain spent, warm-up included, averaged over the chains and rounded."""

    nfe: Array
    acceptance_rate: Array
    trace: Array | None = None
    log_z: Array | float = float("nan")
    ess: Array | float = float("nan")


Needs = tuple[tuple[str, ...], ...]
"""The :class:`Problem` fields a sampler needs: each inner tuple lists alternatives, one of
which must be set, e.g. ``(("init",), ("score", "log_prob"))`` (``init``, and ``score`` or
``log_prob``)."""

KINDS = ("chain", "sde", "ode", "flow")
"""The kinds of sampler: Markov chain, stochastic or deterministic integrator, trained flow."""


def _one_per_step(num_steps: int, **options: Any) -> int:
    """NFE of a sampler with one evaluation per step: ``num_steps`` (options unused)."""
    del options
    return num_steps


def _all_steps(budget: int, **options: Any) -> int:
    """Steps a budget buys at one evaluation per step: ``max(1, budget)`` (options unused)."""
    del options
    return max(1, budget)


class SamplerSpec(NamedTuple):
    """A registry entry: a sampler and the properties callers use instead of its name.

    * ``fn(key, problem, n, num_steps, **options) -> (samples, SamplerInfo)``.
    * ``needs``: the :class:`Problem` fields it needs (:data:`Needs`).
    * ``kind``: one of :data:`KINDS`.
    * ``adaptive``: whether it chooses its own steps (adaptive ODE solvers ignore
      ``num_steps``, solve to ``rtol``/``atol`` and report the NFE they spent).
    * ``nfe(num_steps, **options) -> int``: the NFE a run of ``num_steps`` with those options
      reports; ``None`` for adaptive samplers.
    * ``steps_for(budget, **options) -> int``: the ``num_steps`` a budget of ``budget``
      evaluations buys (what ``flowzoo bench`` runs at); ``None`` for adaptive samplers.

    Both functions take the run's options and ignore those they do not use. The defaults
    describe a fixed-step sampler with one evaluation per step.
    """

    fn: Callable[..., tuple[Batch, SamplerInfo]]
    needs: Needs
    kind: str
    adaptive: bool = False
    nfe: Callable[..., int] | None = _one_per_step
    steps_for: Callable[..., int] | None = _all_steps


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
    """ULA at a fixed step: ``step_size`` as given (default 0.01; flowzoo bench passes the
    target's ``Target.step_size``, the Langevin step its MALA rows get too). Not adapted:
    without an accept/reject step there is no acceptance rate to tune towards, and ULA's
    bias grows with the step (stationary variance ``s^2 / (1 - h / (2 s^2))`` on
    ``N(0, s^2)``), so the step is the caller's statement of the bias it accepts."""
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
    accept = jnp.mean(res.mean_info.acceptance_rate)  # over every step and chain
    return res.state.position, _info(_mala_nfe(num_steps), accept, res.positions if trace else None)


def _mala_nfe(num_steps: int, **options: Any) -> int:
    """One evaluation of the log-density and score per step, plus one at the start."""
    del options
    return num_steps + 1


def _mala_steps(budget: int, **options: Any) -> int:
    """A budget of ``B`` runs ``B`` steps (``B + 1`` evaluations with the initial one), the
    steps a chain without that initial evaluation (ULA, blackjax's MALA) runs at ``B``."""
    del options
    return max(1, budget)


HMC_LEAPFROG = 7
"""Leapfrog steps of an ``hmc`` transition, and the nominal cost of a ``nuts`` transition
(a trajectory of three doublings has 2^3 - 1 = 7 steps): a budget buys both samplers the
same number of transitions. Seven fits one transition and the initial gradient into the
smallest budget flowzoo bench runs (8)."""


def _adapted(algorithm: str, **defaults: Any):
    """A registry entry for an adapted chain from the problem's ``init``: ``"mala"``
    (:func:`mala_adapted_sample`) or blackjax's ``"hmc"``/``"nuts"``
    (:func:`hmc_family_sample`), whose keywords are its options (``defaults`` first). NFE:
    the gradients a chain spent, warm-up included, averaged over the chains and rounded."""

    def run(key, problem, n, num_steps, *, trace=0, **options):
        k0, k1 = jax.random.split(key)
        x0, kw = problem.init(k0, n), {**defaults, **options, "trace": trace}
        if algorithm == "mala":
            out = mala_adapted_sample(problem.log_prob, k1, x0, num_steps, **kw)
        else:
            out = hmc_family_sample(algorithm, problem.log_prob, k1, x0, num_steps, **kw)
        nfe = jnp.round(jnp.mean(out.grads.astype(jnp.float32)))
        return out.position, _info(nfe, out.acceptance, out.trace)

    return run


def _hmc_nfe(num_steps: int, *, num_integration_steps: int = HMC_LEAPFROG, **options) -> int:
    """The initial gradient and ``num_integration_steps`` per transition, warm-up included.
    For ``nuts`` (no such option) the nominal cost: NUTS's is random, so budgets assume
    :data:`HMC_LEAPFROG` gradients a transition, and a run reports what it spent."""
    del options
    return 1 + num_integration_steps * num_steps


def _hmc_steps(budget: int, *, num_integration_steps: int = HMC_LEAPFROG, **options) -> int:
    """The most transitions whose gradients fit in ``budget`` (at least one)."""
    del options
    return max(1, (budget - 1) // num_integration_steps)


def _within_budget(budget: int, **options: Any) -> int:
    """``budget - 1`` steps: with the initial evaluation, ``budget`` in all (at least one)."""
    del options
    return max(1, budget - 1)


def _smc(key, problem, n, num_steps, **options):
    """SMC over ``num_steps`` temperatures from ``N(0, diag(reference_scale^2))``, with the
    options of :func:`smc_sample`; reports ``log_z`` and ``ess``."""
    out = smc_sample(
        problem.log_prob, key, n, problem.reference_scale, problem.event_shape, num_steps, **options
    )
    info = _info(_smc_nfe(num_steps, **options), out.acceptance)
    return out.position, info._replace(log_z=out.log_z, ess=out.ess)


def _smc_nfe(num_steps: int, *, num_moves: int = SMC_MOVES, **options: Any) -> int:
    """One gradient at the start and one per move: ``1 + num_moves * num_steps``."""
    del options
    return 1 + num_moves * num_steps


def _smc_steps(budget: int, *, num_moves: int = SMC_MOVES, **options: Any) -> int:
    """The most temperatures whose moves fit in ``budget`` with the initial gradient."""
    del options
    return max(1, (budget - 1) // num_moves)


_LEVELS = 10  # annealed Langevin's default number of noise levels
_CORRECTORS = 1  # predictor-corrector's default corrector steps per predictor step


def _annealed_steps(budget: int, *, num_levels: int = _LEVELS, **options: Any) -> int:
    """The most steps within ``budget`` that ``num_levels`` divides (at least one per level)."""
    del options
    return max(num_levels, budget // num_levels * num_levels)


def _annealed(
    key, problem, n, num_steps, *, num_levels=_LEVELS, relative_step=2.0, max_step=1.0, t_min=1e-3
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


def _pc(key, problem, n, num_steps, *, num_corrector=_CORRECTORS, snr=0.16, t_min=1e-3):
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
    return x, _info(_pc_nfe(num_steps, num_corrector=num_corrector))


def _pc_nfe(num_steps: int, *, num_corrector: int = _CORRECTORS, **options: Any) -> int:
    """A predictor and ``num_corrector`` corrector evaluations per step; the last step has
    no corrector."""
    del options
    return num_steps * (1 + num_corrector) - num_corrector


def _pc_steps(budget: int, *, num_corrector: int = _CORRECTORS, **options: Any) -> int:
    """The most whole steps of a predictor and ``num_corrector`` corrector evaluations."""
    del options
    return max(1, budget // (1 + num_corrector))


def _fast(fn, nfe_of=_one_per_step, **fixed):
    """A registry entry for a fast diffusion solver ``fn(sde, score_fn, key, shape, steps)``;
    ``nfe_of(num_steps, **options)`` is its evaluation count."""

    def run(key, problem, n, num_steps, **options):
        shape = (n, *problem.event_shape)
        x = fn(problem.sde, problem.score_t, key, shape, num_steps, **{**fixed, **options})
        return x, _info(nfe_of(num_steps, **options))

    return run


def _ode_solver(name: str, num_steps: int | None, rtol: float, atol: float) -> SolverConfig:
    return SolverConfig(name, None if solver_adaptive(name) else num_steps, rtol, atol)


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


def _edm_nfe(num_steps: int, **options: Any) -> int:
    """Two evaluations per Heun step, one for the last step (Euler to sigma = 0)."""
    del options
    return 2 * num_steps - 1


def _edm_steps(budget: int, **options: Any) -> int:
    """The most steps within ``budget`` evaluations, at least the two EDM needs."""
    del options
    return max(2, (budget + 1) // 2)


def _ode_spec(fn, needs: Needs, solver: str) -> SamplerSpec:
    """An ODE sampler on the integrate layer's ``solver``: adaptive as the solver is, else
    ``SolverConfig.nfe_per_step()`` evaluations per step."""
    if solver_adaptive(solver):
        return SamplerSpec(fn, needs, "ode", adaptive=True, nfe=None, steps_for=None)
    per_step = SolverConfig(solver, 1).nfe_per_step()
    return SamplerSpec(
        fn,
        needs,
        "ode",
        nfe=lambda num_steps, **options: per_step * num_steps,
        steps_for=lambda budget, **options: max(1, budget // per_step),
    )


_SCORE_T: Needs = (("sde",), ("score_t",))
_CHAIN: Needs = (("init",), ("log_prob",))
_EDM = dict(nfe=_edm_nfe, steps_for=_edm_steps)

SAMPLERS: dict[str, SamplerSpec] = {
    "ula": SamplerSpec(_ula, (("init",), ("score", "log_prob")), "chain"),
    "mala": SamplerSpec(
        _mala, (("init",), ("log_prob",)), "chain", nfe=_mala_nfe, steps_for=_mala_steps
    ),
    "mala_adapted": SamplerSpec(
        _adapted("mala"), _CHAIN, "chain", nfe=_mala_nfe, steps_for=_within_budget
    ),
    "hmc": SamplerSpec(
        _adapted("hmc", num_integration_steps=HMC_LEAPFROG),
        _CHAIN,
        "chain",
        nfe=_hmc_nfe,
        steps_for=_hmc_steps,
    ),
    "nuts": SamplerSpec(_adapted("nuts"), _CHAIN, "chain", nfe=_hmc_nfe, steps_for=_hmc_steps),
    "smc": SamplerSpec(
        _smc, (("log_prob",), ("reference_scale",)), "chain", nfe=_smc_nfe, steps_for=_smc_steps
    ),
    "annealed_langevin": SamplerSpec(_annealed, _SCORE_T, "chain", steps_for=_annealed_steps),
    "reverse_sde": SamplerSpec(_reverse_sde, _SCORE_T, "sde"),
    "pc": SamplerSpec(_pc, _SCORE_T, "sde", nfe=_pc_nfe, steps_for=_pc_steps),
    "ddim": SamplerSpec(_fast(ddim_sample), _SCORE_T, "ode"),
    "ddim_stochastic": SamplerSpec(_fast(ddim_sample, eta=1.0), _SCORE_T, "sde"),
    "dpm_solver_2m": SamplerSpec(_fast(dpm_solver_2m_sample), _SCORE_T, "ode"),
    "edm_heun": SamplerSpec(_fast(edm_heun_sample, _edm_nfe), _SCORE_T, "ode", **_EDM),
    "edm_heun_churn": SamplerSpec(
        _fast(edm_heun_sample, _edm_nfe, churn=10.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003),
        _SCORE_T,
        "sde",
        **_EDM,
    ),
    "exp_euler": SamplerSpec(_fast(exp_euler_sample), _SCORE_T, "sde"),
}
for _solver in SOLVERS:
    SAMPLERS[f"pf_ode_{_solver}"] = _ode_spec(_pf_ode(_solver), _SCORE_T, _solver)
    SAMPLERS[f"flow_ode_{_solver}"] = _ode_spec(_flow_ode(_solver), (("velocity",),), _solver)
"""Every sampler by name. Fixed-step entries take ``num_steps``; the adaptive ones
(``SamplerSpec.adaptive``: the ODE samplers on an adaptive solver of
:func:`flowzoo.integrate.solver_adaptive`) ignore it and solve to ``rtol``/``atol``."""


def _check_spec(name: str, spec: SamplerSpec) -> None:
    fields = Problem._fields
    needs = spec.needs
    if not (
        isinstance(needs, tuple)
        and all(isinstance(alts, tuple) and alts and set(alts) <= set(fields) for alts in needs)
    ):
        raise ValueError(
            f"SamplerSpec.needs of {name!r} must be a tuple of tuples of Problem fields "
            f"{fields} (one of each inner tuple suffices), e.g. (('init',), ('score', "
            f"'log_prob')); got {needs!r}"
        )
    if spec.kind not in KINDS:
        raise ValueError(f"SamplerSpec.kind of {name!r} must be one of {KINDS}, got {spec.kind!r}")
    if not spec.adaptive and not (callable(spec.nfe) and callable(spec.steps_for)):
        raise ValueError(
            f"SamplerSpec of {name!r}: a fixed-step sampler (adaptive=False) needs callable "
            f"nfe and steps_for, got {spec.nfe!r} and {spec.steps_for!r}"
        )


def register_sampler(name: str, spec: SamplerSpec, *, replace: bool = False) -> None:
    """Add a sampler to :data:`SAMPLERS` (for samplers defined outside flowzoo).

    A name already registered is refused unless ``replace=True``; a spec whose ``needs``,
    ``kind``, ``nfe`` or ``steps_for`` is malformed is refused with the field named.
    """
    if name in SAMPLERS and not replace:
        raise ValueError(
            f"a sampler named {name!r} is already registered; pass replace=True to replace it"
        )
    _check_spec(name, spec)
    SAMPLERS[name] = spec


def missing_fields(needs: Needs, problem: Problem) -> list[str]:
    """The requirements of ``needs`` that ``problem`` leaves unset, each written as its
    alternatives joined by ``" or "`` (e.g. ``["score or log_prob"]``); empty if none."""
    return [
        " or ".join(alts) for alts in needs if all(getattr(problem, alt) is None for alt in alts)
    ]


def supports(name: str, problem: Problem) -> bool:
    """Whether ``problem`` sets every field the sampler ``name`` needs."""
    return not missing_fields(SAMPLERS[name].needs, problem)


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
    missing = missing_fields(spec.needs, problem)
    if missing:
        raise ValueError(f"sampler {name!r} needs Problem fields {missing}, which are None")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    bad_steps = num_steps is None or isinstance(num_steps, bool) or int(num_steps) < 1
    if not spec.adaptive and bad_steps:
        raise ValueError(f"sampler {name!r} needs num_steps >= 1, got {num_steps!r}")
    return spec.fn(key, problem, n, num_steps, **options)
