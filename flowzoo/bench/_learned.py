"""Learned targets: a trained run's own field, scored against held-out data or a tight solve.

``learned_target("runs/fm_moons")`` turns a run directory of ``flowzoo train`` into a
:class:`Target` whose Problem is the trained model's field, so every sampler that can use it
runs on the same network: a flow-matching run (``cfm``) gives its path and velocity (the
flow ODE rows; with a guide, ``model.guide_steps``, the guided field the run samples
with), a score run (``score_sde``) its SDE and score, an NCSN run (``ncsn``) its
noise-conditional score as the score of the VE SDE with the same ``sigma_min``/``sigma_max``
(``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; the network saw only its geometric
grid of sigmas in training). The reference, in the run's standardised units, is

* ``"data"``: the run's held-out split (``n`` distinct points per draw; the noise floor is
  then held-out against held-out), or
* ``"solve"``: the model's own ODE solved by Tsit5 at ``rtol = atol = 1e-5`` (the flow ODE
  of a ``cfm`` run, the probability-flow ODE of a score run down to ``t = 1e-3``), which
  measures each solver's error against the model rather than the model's against the data.

Image runs (``fm_digits``, ``sde_digits``: ``cfm`` or ``score_sde`` on quantised images)
are benchmarked in their model space, flattened to ``D = H W C`` dimensions: the samplers
run on the network's field there, and the held-out images are dequantized once (a fixed
uniform draw) and mapped into the same space by the run's own preprocessing. Digits holds
300 test images, so a data reference needs ``n <= 300`` (``flowzoo bench samplers --n``).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from .. import bijectors
from .. import data as fzdata
from .._compile import jit
from ..integrate import SolverConfig
from ..paths import ve_sde
from ..samplers import flow_ode_sample, pf_ode_sample
from ._targets import Target

REFERENCES = ("data", "solve")


def _flat(fn, shape):
    """A field of ``(n, *shape)`` arrays as one of flattened ``(n, D)`` rows."""
    if len(shape) == 1:
        return fn
    return lambda t, x: fn(t, x.reshape(x.shape[0], *shape)).reshape(x.shape[0], -1)


def _image_model_space(run, shape, test):
    """The inner (model-space) params of an image run and its held-out images mapped into
    that space (one fixed uniform dequantization draw), flattened ``(n, D)``."""
    from ..data import scale_transform
    from ..zoo import image_preprocessing

    cfg = run.config["model"]
    levels = fzdata.IMAGE_LEVELS[str(run.config["data"]["name"]).lower()]
    to_model = bijectors.chain(
        image_preprocessing(cfg.get("preprocess", "scale"), float(cfg.get("alpha", 0.05))),
        scale_transform(levels),
    )
    x = jnp.asarray(test, jnp.float32)
    v = x + jax.random.uniform(jax.random.key(0), x.shape, jnp.float32)
    z, _ = to_model.inverse(run.params["density"]["bijector"], v)
    return run.params["density"]["base"], z.reshape(z.shape[0], -1)


def _fields(run, shape, params):
    from ..paths import get_sde
    from ..score import noise_conditional_score_network
    from ..zoo import cfm_sampling_network, path_from_config, score_sde_network

    cfg = run.config["model"]
    kind = cfg["name"]
    if kind == "cfm":  # the field the run samples with (guided where it has a guide)
        net = cfm_sampling_network(cfg, shape)
        hi = float(cfg.get("time_range", (0.0, 1.0))[1])
        velocity = _flat(lambda t, x: net.apply(params, t, x), shape)
        return {"path": path_from_config(cfg), "velocity": velocity}, hi
    if kind == "score_sde":
        sde = get_sde(cfg["sde"], **cfg.get("sde_kwargs", {}))
        net = score_sde_network(sde, cfg, shape)
        return {"sde": sde, "score_t": _flat(lambda t, x: net.apply(params, t, x), shape)}, None
    if kind == "ncsn":
        lo, hi = float(cfg["sigma_min"]), float(cfg["sigma_max"])
        sde = ve_sde(lo, hi)
        net = noise_conditional_score_network(shape, lo, hi, tuple(cfg["hidden"]))

        def score_t(t, x):
            sigma = sde.marginal(jnp.zeros_like(x), jnp.asarray(t, x.dtype))[1]
            return net.apply(params, jnp.broadcast_to(sigma, x.shape[:1]), x)

        return {"sde": sde, "score_t": score_t}, None
    raise ValueError(
        f"learned targets support cfm, score_sde and ncsn runs; this run's model is {kind!r}"
    )


def learned_target(run_dir: str | os.PathLike, reference: str = "data") -> Target:
    """The :class:`Target` of a trained vector run (see the module docstring).

    Args:
      run_dir: a run directory written by ``flowzoo train``, ``pretrained:NAME`` or the name
        of a pretrained model (:func:`flowzoo.zoo.open_run`).
      reference: ``"data"`` (held-out split) or ``"solve"`` (tight adaptive solve).

    Returns:
      A Target named ``run:<run name>`` (``run:<name>:solve`` for the solve reference) with
      no log-density (no MCMC rows) and the run's fields.
    """
    from ..zoo import load_data, open_run

    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    run = open_run(str(run_dir)).run
    shape = tuple(run.standardizer.shift.shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"{run_dir}: learned targets need (d,) or (H, W, C) events, got {shape}")
    _, test = load_data(run.config)
    if len(shape) == 3:
        params, test = _image_model_space(run, shape, test)
    else:
        params = run.params
        test = jnp.asarray(fzdata.standardize(run.standardizer, np.asarray(test, np.float32)))
    fields, t1 = _fields(run, shape, params)
    name = f"run:{run.config['name']}" + (":solve" if reference == "solve" else "")
    dim = int(np.prod(shape))

    if reference == "data":

        def sample(key, n):
            if n > test.shape[0]:
                raise ValueError(
                    f"{name}: {n} reference points asked, {test.shape[0]} held out; use "
                    f"--n {test.shape[0]} or less, or --reference solve"
                )
            return test[jax.random.permutation(key, test.shape[0])[:n]]

    else:
        tight = SolverConfig("tsit5", None, 1e-5, 1e-5)
        if "velocity" in fields:
            solve = jit(
                lambda key, n: (
                    flow_ode_sample(
                        fields["velocity"],
                        key,
                        (n, dim),
                        path=fields["path"],
                        solver=tight,
                        t1=min(t1, 1.0 - 1e-3),
                    ).samples
                ),
                static_argnums=1,
            )
        else:
            solve = jit(
                lambda key, n: (
                    pf_ode_sample(
                        fields["sde"], fields["score_t"], key, (n, dim), solver=tight
                    ).samples
                ),
                static_argnums=1,
            )
        sample = solve

    return Target(name, dim, sample, None, None, None, 0.0, 1.0, fields)
