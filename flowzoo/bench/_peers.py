"""Peer libraries as benchmark rows: same targets, budgets, seeds and metrics as flowzoo's.

Installed with the ``bench`` extra; a peer whose package is missing is skipped (and named
in the error when asked for explicitly).

* ``blackjax_mala``, ``blackjax_hmc``, ``blackjax_nuts`` (blackjax >= 1.2): one chain per
  sample, ``jax.vmap`` over chains, ``lax.scan`` over steps, from the target's chain
  initialisation. MALA uses the target's Langevin step size ``h`` (blackjax's proposal is
  ``x + h grad + sqrt(2h) xi``, the same as flowzoo's); HMC and NUTS use the leapfrog step
  ``sqrt(2h)`` (one leapfrog step with a fresh momentum is a Langevin step of size ``h``),
  an identity mass matrix and no warm-up adaptation, so every row gets the same tuning.
  HMC takes 8 leapfrog steps per transition. NFE counts gradient evaluations of the whole
  batch: under ``vmap`` a NUTS transition costs the largest tree of the batch.
* ``diffusers_dpm_solver_2m``, ``diffusers_edm_heun`` (diffusers, PyTorch):
  ``DPMSolverMultistepScheduler`` (DPM-Solver++, order 2) and ``HeunDiscreteScheduler`` on
  the Karras sigmas, with the DDPM discretisation of flowzoo's VP SDE (1000 linear betas
  from 1e-4 to 0.02) and the exact noise prediction of the diffused mixture at each of the
  scheduler's noise levels. NFE = model calls.
* ``metafm_euler``, ``metafm_midpoint`` (Meta's ``flow_matching`` >= 1.0, PyTorch):
  ``ODESolver.sample`` on the same exact marginal velocity of the straight path, written in
  PyTorch (the port of :func:`flowzoo.bench.path_velocity` for ``cond_ot_path``) so the
  solver runs on its own framework; torch gets the CPU threads JAX has. ``t1 = 1 - 1e-3``
  as for flowzoo's flow ODE rows.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..samplers import Needs, Problem, SamplerInfo, missing_fields

T1 = 1.0 - 1e-3
HMC_LEAPFROG = 8


class Peer(NamedTuple):
    """A peer row: the package it needs, the :class:`Problem` fields it uses (in the form of
    :data:`flowzoo.samplers.Needs`), its kind, NFE per step (for budgets), whether it runs
    under ``jax.jit``, and ``run(key, problem, target, n, num_steps) -> (samples, SamplerInfo)``."""

    package: str
    needs: Needs
    kind: str
    nfe_per_step: int
    jittable: bool
    run: Callable[..., tuple[Any, SamplerInfo]]


def available(peer: Peer) -> bool:
    """Whether the peer's package can be imported."""
    return importlib.util.find_spec(peer.package) is not None


def _single(log_prob):
    return lambda x: log_prob(x[None])[0]


def _chains(build, problem: Problem, key, n: int, num_steps: int, nfe_fn):
    """Run ``n`` vmapped chains of the blackjax algorithm ``build(logdensity)``."""
    algo = build(_single(problem.log_prob))
    k_init, k_run = jax.random.split(key)
    x0 = problem.init(k_init, n)
    state = jax.vmap(algo.init)(x0)

    def body(state, k):
        state, info = jax.vmap(algo.step)(jax.random.split(k, n), state)
        return state, (jnp.mean(info.acceptance_rate), nfe_fn(info))

    state, (acc, nfe) = jax.lax.scan(body, state, jax.random.split(k_run, num_steps))
    info = SamplerInfo(jnp.sum(nfe).astype(jnp.int32), jnp.mean(acc).astype(jnp.float32))
    return state.position, info


def _blackjax_mala(key, problem, target, n, num_steps):
    import blackjax

    return _chains(
        lambda lp: blackjax.mala(lp, target.step_size),
        problem,
        key,
        n,
        num_steps,
        lambda info: jnp.int32(1),
    )


def _leapfrog_step(target) -> float:
    return math.sqrt(2.0 * target.step_size)


def _blackjax_hmc(key, problem, target, n, num_steps):
    import blackjax

    d = int(np.prod(problem.event_shape))
    return _chains(
        lambda lp: blackjax.hmc(lp, _leapfrog_step(target), jnp.ones(d), HMC_LEAPFROG),
        problem,
        key,
        n,
        num_steps,
        lambda info: jnp.int32(HMC_LEAPFROG),
    )


def _blackjax_nuts(key, problem, target, n, num_steps):
    import blackjax

    d = int(np.prod(problem.event_shape))
    return _chains(
        lambda lp: blackjax.nuts(lp, _leapfrog_step(target), jnp.ones(d)),
        problem,
        key,
        n,
        num_steps,
        lambda info: jnp.max(info.num_integration_steps).astype(jnp.int32),
    )


def torch_cond_ot_velocity(mixture):
    """The marginal velocity of the straight path from N(0, I) to a diagonal Gaussian mixture,
    as a PyTorch ``(x, t) -> v`` (flow-matching time; the field of ``path_velocity``)."""
    import torch

    w = torch.tensor(np.array(mixture.weights), dtype=torch.float32)
    m = torch.tensor(np.array(mixture.means), dtype=torch.float32)
    v = torch.tensor(np.array(mixture.variances), dtype=torch.float32)
    log_w = torch.log(w)

    def velocity(x, t):
        t = t.reshape(()) if t.ndim else t
        alpha, sigma = t, 1.0 - t
        means, var = alpha * m, alpha**2 * v + sigma**2  # (K, d)
        r = (x[:, None, :] - means[None]) / var[None]
        log_c = -0.5 * torch.sum(r * (x[:, None, :] - means[None]) + torch.log(var)[None], -1)
        post = torch.softmax(log_c + log_w[None], dim=1)
        e_x1 = m[None] + alpha * v[None] * r
        e_x0 = sigma * r
        return torch.einsum("nk,nkd->nd", post, e_x1 - e_x0)

    return velocity


def _metafm(method: str, nfe_per_step: int):
    def run(key, problem, target, n, num_steps):
        import torch
        from flow_matching.solver import ODESolver
        from flow_matching.utils import ModelWrapper

        torch.set_num_threads(os.cpu_count() or 1)
        field = torch_cond_ot_velocity(target.mixture)

        class Field(ModelWrapper):
            def __init__(self):
                super().__init__(None)

            def forward(self, x, t, **extras):
                return field(x, t)

        seed = int(np.asarray(jax.random.randint(key, (), 0, 2**31 - 1)))
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randn(n, *problem.event_shape, generator=gen)
        with torch.no_grad():
            x1 = ODESolver(velocity_model=Field()).sample(
                x0, T1 / num_steps, method=method, time_grid=torch.tensor([0.0, T1])
            )
        info = SamplerInfo(np.int32(num_steps * nfe_per_step), np.float32(np.nan))
        return jnp.asarray(x1.numpy()), info

    return run


def torch_diffused_score(mixture):
    """``score(a, s, x)`` of the mixture pushed through ``x -> a x + s z``, in PyTorch (the
    port of :func:`flowzoo.bench._mixture.diffused_score`)."""
    import torch

    w = torch.tensor(np.array(mixture.weights), dtype=torch.float32)
    m = torch.tensor(np.array(mixture.means), dtype=torch.float32)
    v = torch.tensor(np.array(mixture.variances), dtype=torch.float32)
    log_w = torch.log(w)

    def score(a: float, s: float, x):
        means, var = a * m, a * a * v + s * s
        diff = x[:, None, :] - means[None]
        log_c = -0.5 * torch.sum(diff * diff / var[None] + torch.log(var)[None], -1)
        post = torch.softmax(log_c + log_w[None], dim=1)
        return torch.einsum("nk,nkd->nd", post, -diff / var[None])

    return score


# the DDPM discretisation of flowzoo's VP SDE (beta 0.1 -> 20 over t in [0, 1]): 1000 steps
DDPM = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def _diffusers(scheduler: str, nfe_of, **kwargs):
    """A diffusers scheduler on the exact noise prediction ``eps = -s * score`` of the
    diffused mixture at the scheduler's own noise level (``a = sqrt(abar)``, ``s =
    sqrt(1 - abar)``, ``abar = 1 / (1 + sigma^2)``, ``sigma`` interpolated in log space
    between the discrete levels exactly as diffusers maps fractional timesteps)."""

    def run(key, problem, target, n, num_steps):
        import diffusers
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        sched = getattr(diffusers, scheduler)(**DDPM, prediction_type="epsilon", **kwargs)
        sched.set_timesteps(num_steps)
        abar = sched.alphas_cumprod.double().numpy()
        log_sigmas = 0.5 * np.log((1.0 - abar) / abar)
        score = torch_diffused_score(target.mixture)
        seed = int(np.asarray(jax.random.randint(key, (), 0, 2**31 - 1)))
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(n, *problem.event_shape, generator=gen) * sched.init_noise_sigma
        calls = 0
        with torch.no_grad():
            for t in sched.timesteps:
                inp = sched.scale_model_input(x, t)
                sigma = float(np.exp(np.interp(float(t), np.arange(abar.size), log_sigmas)))
                a2 = 1.0 / (1.0 + sigma * sigma)
                s = math.sqrt(1.0 - a2)
                eps = -s * score(math.sqrt(a2), s, inp)
                calls += 1
                x = sched.step(eps, t, x).prev_sample
        info = SamplerInfo(np.int32(calls), np.float32(np.nan))
        return jnp.asarray(x.numpy()), info

    return run


PEERS: dict[str, Peer] = {
    "blackjax_mala": Peer("blackjax", (("log_prob",), ("init",)), "chain", 1, True, _blackjax_mala),
    "blackjax_hmc": Peer(
        "blackjax", (("log_prob",), ("init",)), "chain", HMC_LEAPFROG, True, _blackjax_hmc
    ),
    # NUTS spends a data-dependent number of gradients per step; budgets assume 8
    "blackjax_nuts": Peer("blackjax", (("log_prob",), ("init",)), "chain", 8, True, _blackjax_nuts),
    "metafm_euler": Peer("flow_matching", (("velocity",),), "ode", 1, False, _metafm("euler", 1)),
    "metafm_midpoint": Peer(
        "flow_matching", (("velocity",),), "ode", 2, False, _metafm("midpoint", 2)
    ),
    "diffusers_dpm_solver_2m": Peer(
        "diffusers",
        (("sde",), ("score_t",)),
        "ode",
        1,
        False,
        _diffusers(
            "DPMSolverMultistepScheduler",
            None,
            algorithm_type="dpmsolver++",
            solver_order=2,
            final_sigmas_type="sigma_min",
        ),
    ),
    # Heun on the Karras schedule (EDM, Karras et al. 2022): 2 evaluations per step but
    # the last, so a budget B gives B // 2 + 1 steps and 2 * steps - 1 evaluations
    "diffusers_edm_heun": Peer(
        "diffusers",
        (("sde",), ("score_t",)),
        "ode",
        2,
        False,
        _diffusers("HeunDiscreteScheduler", None, use_karras_sigmas=True),
    ),
}
"""Peer rows by name (``flowzoo bench samplers --samplers blackjax_nuts,...``)."""


def supports_peer(name: str, problem: Problem, target) -> bool:
    """Whether the peer ``name`` can run on ``problem`` (the fields it needs are set; the
    PyTorch rows also need the target to be a mixture, whose field they port)."""
    peer = PEERS[name]
    if missing_fields(peer.needs, problem):
        return False
    return target.mixture is not None if not peer.jittable else True
