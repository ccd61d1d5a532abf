"""Learned targets: a trained run's own field, scored against held-out data or a tight solve.

``learned_target("runs/fm_moons")`` turns a run directory of ``flowzoo train`` into a
:class:`Target` whose Problem is the trained model's field, so every sampler that can use it
runs on the same network: a flow-matching run (``cfm``) gives its path and velocity (the
flow ODE rows), a score run (``score_sde``) its SDE and score, an NCSN run (``ncsn``) its
noise-conditional score as the score of the VE SDE with the same ``sigma_min``/``sigma_max``
(``sigma(t) = sigma_min (sigma_max / sigma_min)^t``; the network saw only its geometric
grid of sigmas in training). The reference, in the run's standardised units, is

* ``"data"``: the run's held-out split (``n`` distinct points per draw; the noise floor is
  then held-out against held-out), or
* ``"solve"``: the model's own ODE solved by Tsit5 at ``rtol = atol = 1e-5`` (the flow ODE
  of a ``cfm`` run, the probability-flow ODE of a score run down to ``t = 1e-3``), which
  measures each solver's error against the model rather than the model's against the data.

Vector runs only (event shape ``(d,)``); image runs (``fm_digits``, ``sde_digits``) are not
supported yet.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from .. import data as fzdata
from ..integrate import SolverConfig
from ..paths import ve_sde
from ..samplers import flow_ode_sample, pf_ode_sample
from ._targets import Target

REFERENCES = ("data", "solve")


def _fields(run, shape):
    from ..paths import get_sde
    from ..zoo._flow_matching import _path_from_config, network
    from ..zoo._score import noise_conditional_score_network, score_network

    cfg, params = run.config["model"], run.params
    kind = cfg["name"]
    if kind == "cfm":
        net = network(cfg, shape)
        hi = float(cfg.get("time_range", (0.0, 1.0))[1])
        velocity = lambda t, x: net.apply(params, t, x)  # noqa: E731
        return {"path": _path_from_config(cfg), "velocity": velocity}, hi
    if kind == "score_sde":
        sde = get_sde(cfg["sde"], **cfg.get("sde_kwargs", {}))
        net = score_network(sde, cfg, shape)
        return {"sde": sde, "score_t": lambda t, x: net.apply(params, t, x)}, None
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
      run_dir: a run directory written by ``flowzoo train``.
      reference: ``"data"`` (held-out split) or ``"solve"`` (tight adaptive solve).

    Returns:
      A Target named ``run:<run name>`` (``run:<name>:solve`` for the solve reference) with
      no log-density (no MCMC rows) and the run's fields.
    """
    from ..zoo import load_run
    from ..zoo._run import load_data

    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    run = load_run(run_dir)
    shape = tuple(json.loads((Path(run_dir) / "run.json").read_text())["event_shape"])
    if len(shape) != 1:
        raise ValueError(
            f"{run_dir}: learned targets need vector runs (event shape (d,)), got {shape}"
        )
    fields, t1 = _fields(run, shape)
    _, test = load_data(run.config)
    test = jnp.asarray(fzdata.standardize(run.standardizer, np.asarray(test, np.float32)))
    name = f"run:{run.config['name']}" + (":solve" if reference == "solve" else "")
    dim = shape[0]

    if reference == "data":

        def sample(key, n):
            if n > test.shape[0]:
                raise ValueError(f"{name}: {n} reference points asked, {test.shape[0]} held out")
            return test[jax.random.permutation(key, test.shape[0])[:n]]

    else:
        tight = SolverConfig("tsit5", None, 1e-5, 1e-5)
        if "velocity" in fields:
            solve = jax.jit(
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
            solve = jax.jit(
                lambda key, n: (
                    pf_ode_sample(
                        fields["sde"], fields["score_t"], key, (n, dim), solver=tight
                    ).samples
                ),
                static_argnums=1,
            )
        sample = solve

    return Target(name, dim, sample, None, None, None, 0.0, 1.0, fields)
