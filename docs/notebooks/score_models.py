# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A score model: denoising score matching, Langevin, the reverse SDE, PF-ODE likelihood
#
# One network `s(t, x) ~ grad log p_t(x)` for the marginals of the VP SDE, trained by
# denoising score matching, then used four ways. Time convention of SDEs: **t = 0 is data,
# t = T = 1 is noise**.
#
# This notebook is executed by the test suite (`tests/test_notebooks.py`); its `assert`
# lines are part of that test. Source: `docs/notebooks/score_models.py` (jupytext percent
# format).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from flowzoo import data, metrics, paths, samplers, score, train
from flowzoo.integrate import SolverConfig

keys = jax.random.split(jax.random.key(0), 8)
x_train = data.toy("two_moons", keys[0], 4096)
x_test = data.toy("two_moons", keys[1], 1024)
std = data.fit_standardizer(x_train)
x_train_s, x_test_s = data.standardize(std, x_train), data.standardize(std, x_test)

# %% [markdown]
# ## Denoising score matching on the VP SDE
#
# `dx = -beta(t)/2 x dt + sqrt(beta(t)) dW` with `beta` linear from 0.1 to 20 (Song et al.
# 2021). `sde_score_network` divides the MLP's output by the marginal std, so it predicts
# `-noise`; `sde_dsm_loss` draws `t`, noises the data and regresses on the known score of
# the Gaussian kernel (with the usual `std^2` weighting).

# %%
sde = paths.vp_sde()
net = score.sde_score_network(sde, (2,), hidden=(64, 64, 64))
params = net.init(keys[2], jnp.full((256,), 0.5), x_train_s[:256])
result = train.fit(
    score.sde_dsm_loss(net.apply, sde),
    optax.adam(2e-3),
    params,
    data.array_batches(x_train_s, 256),
    key=keys[3],
    num_steps=2000,
    steps_per_call=500,
    progress=False,
)
params = result.state.params
score_t = jax.jit(lambda t, x: net.apply(params, t, x))  # (t, x) -> score of p_t
print([round(r["loss"], 3) for r in result.history])
assert result.history[-1]["loss"] < result.history[0]["loss"]

# %% [markdown]
# ## Four samplers from one score
#
# * **Annealed Langevin** (Song & Ermon 2019): unadjusted Langevin steps
#   `x <- x + eps s(x) + sqrt(2 eps) z` on the score at times from 1 down to 0.01, with the
#   step proportional to the marginal variance at each level. (ULA on the small-time score
#   alone, started from noise, does not reach the data: far from the data that score is
#   large and poorly learned, which is the reason for annealing.)
# * **Reverse-SDE Euler-Maruyama** from the prior at t = 1 down to `t_min = 1e-3`.
# * **Predictor-corrector**: the same predictor plus one Langevin corrector per step.
# * **Probability-flow ODE**: the deterministic ODE with the same marginals.

# %%
n = 1000
levels = jnp.geomspace(1.0, 0.01, 10)  # 10 noise levels, 100 ULA steps at each


@jax.jit  # the levels run in one compiled loop (lax.scan), not one compile per level
def annealed_langevin(key, x):
    def level(x, i):
        t = levels[i]
        var_t = sde.marginal(jnp.zeros((1, 2)), t)[1] ** 2
        chain = samplers.ula(lambda x: score_t(jnp.full((x.shape[0],), t), x), 0.05 * var_t)
        result = samplers.run_chain(chain, jax.random.fold_in(key, i), x, 100, 100)
        return result.state.position, None

    return jax.lax.scan(level, x, jnp.arange(len(levels)))[0]


langevin = annealed_langevin(keys[4], jax.random.normal(keys[5], (n, 2)))
reverse = samplers.reverse_sde_sample(sde, score_t, keys[6], (n, 2), 200)
pc = samplers.pc_sample(sde, score_t, keys[6], (n, 2), 100)
pf = samplers.pf_ode_sample(sde, score_t, keys[7], (n, 2), solver=SolverConfig("heun", 50)).samples

reference = x_test_s[:n]
floor = float(metrics.energy_distance(x_test_s[:n], x_train_s[:n]))
for name, xs in [("annealed ULA", langevin), ("reverse SDE", reverse), ("PC", pc), ("PF-ODE", pf)]:
    ed = float(metrics.energy_distance(xs, reference))
    print(f"{name:12s} energy distance to held-out data {ed:.4f} (data vs data {floor:.4f})")
    assert ed < 0.03

# %% [markdown]
# ## Likelihood through the probability-flow ODE
#
# `pf_ode_distribution` turns the score model into a `Distribution` whose `log_prob` is the
# instantaneous change of variables along the PF-ODE, from data at `t_min` to the Gaussian
# prior at T (exact divergence here; 2-D).

# %%
model = score.pf_ode_distribution(
    sde, net, (2,), t_min=1e-3, log_prob_solver=SolverConfig("rk4", 64)
)
nll = -jnp.mean(jax.jit(model.log_prob)(params, x_test_s))
print(f"PF-ODE test NLL {nll:.3f} nats (standardised units)")
assert nll < 2.6  # a standard normal on this standardised data: 2.84 nats

# %%
fig, axes = plt.subplots(1, 5, figsize=(16, 3.2), sharex=True, sharey=True)
panels = [("held-out data", reference), ("annealed ULA", langevin), ("reverse SDE", reverse)]
panels += [("predictor-corrector", pc), ("PF-ODE (Heun, 50 steps)", pf)]
for ax, (name, xs) in zip(axes, panels, strict=True):
    ax.scatter(*np.asarray(xs).T, s=1)
    ax.set_title(name)
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    ax.set_aspect("equal")
plt.show()
