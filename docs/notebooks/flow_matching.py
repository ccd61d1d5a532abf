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
# # Flow matching from scratch
#
# A probability path, a minibatch-OT coupling, the exact marginal velocity of a finite data
# set, a network trained by conditional flow matching, ODE sampling, and the model's
# likelihood. Time convention throughout: **t = 0 is noise N(0, I), t = 1 is data**.
#
# This notebook is executed by the test suite (`tests/test_notebooks.py`); its `assert`
# lines are part of that test. Source: `docs/notebooks/flow_matching.py` (jupytext percent
# format).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from flowzoo import data, nets, paths, samplers, train
from flowzoo import flow_matching as fm
from flowzoo.integrate import SolverConfig

k_data, k_test, k_init, k_fit, k_oracle, k_sample = jax.random.split(jax.random.key(0), 6)
x_train = data.toy("eight_gaussians", k_data, 4096)  # (4096, 2)
x_test = data.toy("eight_gaussians", k_test, 1024)
std = data.fit_standardizer(x_train)
x_train_s, x_test_s = data.standardize(std, x_train), data.standardize(std, x_test)

# %% [markdown]
# ## The path
#
# The conditional OT path (rectified flow / I-CFM) moves noise `x0` to data `x1` on a
# straight line, `x_t = (1 - t) x0 + t x1`, so the conditional velocity is `x1 - x0`.
# `path.schedule(t)` returns `(alpha_t, sigma_t)` of `x_t = alpha_t x1 + sigma_t x0`:

# %%
path = paths.cond_ot_path()
alpha, sigma = path.schedule(jnp.array([0.0, 0.5, 1.0]))
assert jnp.allclose(alpha, jnp.array([0.0, 0.5, 1.0]))
assert jnp.allclose(sigma, jnp.array([1.0, 0.5, 0.0]))

# %% [markdown]
# ## The exact marginal velocity of a finite data set
#
# For the empirical distribution of `m` points the marginal velocity field is a softmax-
# weighted average of the conditional ones, in closed form (`fm.marginal_velocity`). Its ODE
# carries noise onto the training points themselves: the "perfect" flow-matching model
# memorises. It is the oracle the sampler benchmarks use for data-defined targets. Near
# t = 1 it becomes stiff (it points at single points, and grows like `1 / (1 - t)`), so we
# stop at t = 0.995, where the path's noise scale is 0.005.

# %%
memory = x_train_s[:64]
oracle = fm.marginal_velocity(path, memory)  # (t, x) -> velocity
out = samplers.flow_ode_sample(
    oracle, k_oracle, (256, 2), path=path, solver=SolverConfig("rk4", 40), t1=0.995
)
dist_to_memory = jnp.min(jnp.linalg.norm(out.samples[:, None] - memory[None], axis=-1), axis=1)
print(f"median distance to the nearest memorised point: {jnp.median(dist_to_memory):.4f}")
assert jnp.median(dist_to_memory) < 0.03  # about 0.01 here

# %% [markdown]
# ## Training a velocity network
#
# `cfm_loss` regresses the network on the conditional velocity at random times. With
# `exact_ot_coupling` each minibatch of noise is paired with the data by the optimal
# assignment (Pooladian et al. 2023; Tong et al. 2023), which straightens the paths.

# %%
net = nets.time_mlp((2,), hidden=(128, 128, 128))
params = net.init(k_init, jnp.zeros(256), x_train_s[:256])
loss = fm.cfm_loss(net.apply, path, coupling=fm.exact_ot_coupling())
result = train.fit(
    loss,
    optax.adam(2e-3),
    params,
    data.array_batches(x_train_s, 256),
    key=k_fit,
    num_steps=1000,
    steps_per_call=250,
    progress=False,
)
params = result.state.params
print([round(r["loss"], 3) for r in result.history])
assert result.history[-1]["loss"] < result.history[0]["loss"]

# %% [markdown]
# ## Sampling and likelihood
#
# `fm.distribution(net, path, shape)` wraps the learned field as a `Distribution`: `sample`
# integrates the ODE from the path's t=0 marginal (midpoint, 20 steps by default) and
# `log_prob` is the continuous change of variables (exact divergence, RK4).

# %%
model = fm.distribution(net, path, (2,))
samples_s = jax.jit(lambda p, k: model.sample(p, k, 2000))(params, k_sample)
nll = -jnp.mean(jax.jit(model.log_prob)(params, x_test_s))
print(f"test NLL {nll:.3f} nats (standardised units)")
# a standard normal on standardised 8-Gaussian data scores about 2.84 nats
assert nll < 2.5

# %%
samples = data.unstandardize(std, samples_s)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True, sharey=True)
axes[0].scatter(*np.asarray(x_test).T, s=1)
axes[0].set_title("held-out data")
axes[1].scatter(*np.asarray(data.unstandardize(std, out.samples)).T, s=3, color="C1")
axes[1].set_title("oracle ODE: the memorised points")
axes[2].scatter(*np.asarray(samples).T, s=1, color="C2")
axes[2].set_title("trained CFM (exact-OT coupling)")
for ax in axes:
    ax.set_aspect("equal")
plt.show()
