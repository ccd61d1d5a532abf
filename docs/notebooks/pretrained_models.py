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
# # Pretrained models and your own networks
#
# flowzoo ships the weights of the recipes that train on a laptop, so a model is one call
# away: here the flow-matching model of MNIST (`fm_mnist`, with its autoguidance guide).
# We read its model card, sample it with three ODE solvers of the sampler registry, compute
# its bits/dim, change its guidance weight, fine-tune it for a few steps, and finally
# train a flow-matching model whose velocity field is a Flax NNX module.
# Time convention: **t = 0 is noise N(0, I), t = 1 is data**.
#
# This notebook is executed by the test suite (`tests/test_notebooks.py`); its `assert`
# lines are part of that test. Source: `docs/notebooks/pretrained_models.py`.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from flowzoo import bench, data, nets, paths, samplers, train, zoo
from flowzoo import flow_matching as fm
from flowzoo.integrate import SolverConfig

# %% [markdown]
# ## The model card
#
# Every shipped model has a card: what trained it (the command and commit), on what data,
# how long, and the figures the weights reproduce. `zoo.pretrained` checks the weight
# file's SHA-256 against the card before it reads it, and returns the same `Run` as
# `zoo.load_run` does for a run directory.

# %%
card = zoo.model_card("fm_mnist")
fig = card["figures"]
print(card["command"], "at commit", card["commit"], f"({card['parameters']:,} parameters)")
print(f"test bits/dim {fig['test_bpd']:.3f} ± {fig['test_bpd_se']:.3f} (n={fig['n_test']})")
print(f"FD {fig['fd']['mean']:.2f}, legibility {fig['legibility']['mean']:.3f} (3 draws)")
run = zoo.pretrained("fm_mnist")
print(run.config["model"]["name"], "step", run.step)

# %% [markdown]
# ## Three solvers of the sampler registry
#
# `bench.learned_target` turns a trained model into a target of the sampler benchmark: the
# field it samples with (here the guided velocity, flattened to vectors in the model's
# space `[-1, 1)`) and its path. Any flow-ODE sampler of `samplers.SAMPLERS` then samples
# it; each reports its number of network evaluations.

# %%
target = bench.learned_target("pretrained:fm_mnist")
problem = target.problem(None, None)
key = jax.random.key(0)
grids = {}
for name, steps in [("flow_ode_euler", 8), ("flow_ode_midpoint", 4), ("flow_ode_rk4", 2)]:
    z, info = samplers.SAMPLERS[name].fn(key, problem, 16, steps)
    grids[name] = np.clip((np.asarray(z).reshape(16, 28, 28) + 1) / 2, 0, 1)
    print(f"{name}: {int(info.nfe)} evaluations of the guided field")
    assert np.all(np.isfinite(np.asarray(z)))

fig_, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (name, g) in zip(axes, grids.items(), strict=True):
    ax.imshow(g.reshape(4, 4, 28, 28).transpose(0, 2, 1, 3).reshape(112, 112), cmap="gray")
    ax.set_title(name)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Bits per dimension
#
# `run.log_prob` is the dequantisation bound on `log P(x)` of integer images, in nats per
# image, from the CNF of the guided field (Hutchinson's estimator, adaptive Tsit5: the
# recipe's settings). The mean over the first four held-out images lies within three
# standard errors of the card's mean over 200 (the standard error of a mean of four: the
# card's spread of single images over 2, plus the card's own). This cell is the fixed-seed
# check of `fm_mnist` that `tests/zoo/test_pretrained.py` makes of every other shipped model:

# %%
k = 4
test = data.image_dataset("mnist").test[:k]
bpd = -np.asarray(run.log_prob(test)) / (28 * 28 * np.log(2))
print(f"bits/dim of {k} test images:", np.round(bpd, 3))
se = fig["test_bpd_sd"] / np.sqrt(k) + fig["test_bpd_se"]
assert abs(bpd.mean() - fig["test_bpd"]) <= 3 * se, (bpd.mean(), fig["test_bpd"], se)

# %% [markdown]
# ## The guidance weight
#
# `fm_mnist` samples with autoguidance: the velocity `v_guide + w (v_main - v_guide)`, where
# the guide is a smaller, shorter-trained model (Karras et al. 2024) and the card's `w` is 2.
# `zoo.pretrained_parts` returns the two sets of params; `zoo.guided_run` composes them
# with any weight. At `w = 1` the guide drops out, so the same key must give the main
# model's own samples (up to float rounding: `v_guide + (v_main - v_guide)` is `v_main` to
# within an ulp, which can move a pixel that sits on the boundary between two grey levels
# by one level); the shipped run is the one at `w = 2`, and larger weights push further
# from the guide.

# %%
parts = zoo.pretrained_parts("fm_mnist")
config = parts.main.config


def with_weight(w):
    cfg = {**config, "model": {**config["model"], "guide_weight": w}}
    return zoo.guided_run(cfg, (28, 28, 1), parts.main, parts.guide_params)


key = jax.random.key(7)
shown = {w: with_weight(w).sample(key, 9) for w in (1.0, 2.0)}
main_alone = zoo.Run(
    config, parts.main.model, parts.main.params, parts.main.standardizer, parts.main.step
)
levels_apart = np.abs(np.asarray(shown[1.0]) - np.asarray(main_alone.sample(key, 9)))
assert levels_apart.max() <= 1 and (levels_apart > 0).mean() < 1e-3, levels_apart.max()

fig_, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, (w, x) in zip(axes, shown.items(), strict=True):
    grid = np.asarray(x).reshape(3, 3, 28, 28).transpose(0, 2, 1, 3).reshape(84, 84)
    ax.imshow(grid, cmap="gray")
    ax.set_title(f"guide weight w = {w:g}")
    ax.axis("off")
plt.show()

# %% [markdown]
# ## Fine-tuning
#
# The shipped params are an ordinary pytree: `train.fit` continues training them with a new
# optimizer state (`flowzoo train fm_mnist --init pretrained` does the same from the
# command line, in its own run directory). A few steps at a small learning rate, one step
# per compiled call (`steps_per_call=1`, as the image recipes train): on CPU, XLA runs the
# gradient convolutions of a step inside a loop several times slower than at top level.

# %%
images = data.image_dataset("mnist").train.astype(np.float32)
result = train.fit(
    parts.main.model.loss,
    optax.adam(1e-5),
    parts.main.params,
    data.array_batches(images, 8),
    key=jax.random.key(2),
    num_steps=2,
    steps_per_call=1,
    progress=False,
)
print("fine-tuning loss:", [round(r["loss"], 3) for r in result.history])
assert all(np.isfinite(r["loss"]) for r in result.history)

# %% [markdown]
# ## Your own network: a Flax NNX velocity field
#
# `nets.from_nnx(factory)` makes any NNX module a flowzoo `Network`: `init(key, t, x)` builds
# the module from the key and returns its parameters as a pytree, `apply(params, t, x)`
# calls it. As a flow-matching velocity on two moons:


# %%
class Velocity(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.first = nnx.Linear(2 + 32, 128, rngs=rngs)
        self.second = nnx.Linear(128 + 32, 128, rngs=rngs)
        self.out = nnx.Linear(128, 2, rngs=rngs)

    def __call__(self, t, x):  # t: a scalar (the ODE solvers) or one per row (training)
        emb = nets.sinusoidal_embedding(jnp.broadcast_to(t, x.shape[:1]), 32)
        h = jax.nn.silu(self.first(jnp.concatenate([x, emb], -1)))
        h = jax.nn.silu(self.second(jnp.concatenate([h, emb], -1)))
        return self.out(h)


velocity = nets.from_nnx(lambda rngs: Velocity(rngs))
moons = data.toy("two_moons", jax.random.key(3), 4096)
std = data.fit_standardizer(moons)
moons_s = data.standardize(std, moons)
path = paths.cond_ot_path()
params = velocity.init(jax.random.key(4), jnp.zeros(8), moons_s[:8])
out = train.fit(
    fm.cfm_loss(velocity.apply, path),
    optax.adam(optax.cosine_decay_schedule(5e-3, 1000)),
    params,
    data.array_batches(moons_s, 256),
    key=jax.random.key(5),
    num_steps=1000,
    steps_per_call=250,
    progress=False,
)
model = fm.distribution(velocity, path, (2,), log_prob_solver=SolverConfig("rk4", 32))
held_out = data.standardize(std, data.toy("two_moons", jax.random.key(6), 1000))
nll = -float(jnp.mean(jax.jit(model.log_prob)(out.state.params, held_out)))
print(f"test NLL {nll:.3f} nats (standardised units; N(0, I) scores 2.84)")
assert nll < 2.4

# %% [markdown]
# A short run: `fm_moons`, the shipped model, reaches 1.21 after 4,000 steps of a larger
# network. `benchmarks/adapters.py` trains the same architecture written with
# `flowzoo.nets`, Linen, NNX, Equinox and Haiku over five seeds: the adapters reach the
# test NLL of flowzoo's own network ([Bring your own network](../networks.md)).
