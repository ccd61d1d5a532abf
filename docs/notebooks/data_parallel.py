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
# # Data-parallel training on 8 simulated devices, and what changes on a pod
#
# `flowzoo.train.fit(..., parallel=train.DataParallel(mesh))` trains data-parallel: each
# global batch is split along the mesh's `"data"` axis, every device computes the gradient
# of its rows, the gradients are averaged across devices, and params, optimizer state and
# EMA stay replicated. On a CPU the XLA flag `--xla_force_host_platform_device_count=8`
# simulates 8 devices; it must be set before JAX starts, so it comes first.
#
# This notebook is executed by the test suite (`tests/test_notebooks.py`); its `assert`
# lines are part of that test. Source: `docs/notebooks/data_parallel.py`.

# %%
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)

import jax  # noqa: E402  (after the flag)
import numpy as np  # noqa: E402
import optax  # noqa: E402

from flowzoo import data, flows, train  # noqa: E402

print(jax.devices())
assert jax.device_count() == 8

# %% [markdown]
# ## One model, two ways
#
# The same RealNVP and the same batches (a pure function of the step), trained once on one
# device and once on a mesh of all 8. The global batch of 256 becomes 32 rows per device.

# %%
x = data.standardize(*[data.fit_standardizer(d := data.two_moons(jax.random.key(1), 8192)), d])
flow = flows.realnvp(2, 4, (64, 64))
params = flow.init(jax.random.key(2), x[:256])
batches = data.array_batches(x, 256)


def run(mesh, num_steps):
    return train.fit(
        flows.nll_loss(flow),
        optax.adam(1e-3),
        params,
        batches,
        key=jax.random.key(3),
        num_steps=num_steps,
        steps_per_call=min(num_steps, 100),
        progress=False,
        parallel=train.DataParallel(mesh),
    )


mesh = train.data_mesh()  # a 1-D Mesh over jax.devices(), axis "data"
single, parallel = run(None, 300), run(mesh, 300)
print(mesh)
print("one device:", [round(r["loss"], 4) for r in single.history])
print("8 devices: ", [round(r["loss"], 4) for r in parallel.history])

# %% [markdown]
# Each step agrees up to float reassociation: the mean over 256 rows is computed as 8
# partial means and a cross-device mean instead of one sum. Over hundreds of Adam steps
# those rounding differences grow (training is chaotic in that sense), so the two runs
# drift apart in their params while reaching the same loss. After 10 steps they still
# agree to float32 precision:

# %%
losses = [(a["loss"], b["loss"]) for a, b in zip(single.history, parallel.history, strict=True)]
assert all(abs(a - b) < 0.02 * abs(a) for a, b in losses)
short_single, short_parallel = run(None, 10), run(mesh, 10)
pairs = zip(jax.tree.leaves(short_single.state), jax.tree.leaves(short_parallel.state), strict=True)
for a, b in pairs:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
sharding = jax.tree.leaves(parallel.state.params)[0].sharding
print(sharding)  # replicated over the 8 devices
assert sharding.is_fully_replicated
assert len(sharding.device_set) == 8

# %% [markdown]
# ## What changes on a GPU/TPU pod
#
# Nothing in the model or the loss. On one host with several accelerators,
# `DataParallel("auto")` (or `train.data_mesh()`) takes every device, and the batch size
# must divide by the device count. On several hosts, start the same program once per host
# and initialise JAX's distributed runtime first:
#
# ```python
# train.initialize_distributed("host0:1234", num_processes=4, process_id=i)
# # a mesh over all devices of all processes:
# train.fit(..., parallel=train.DataParallel("auto"))
# # the same, where each host loads only its own rows:
# train.fit(..., parallel=train.DataParallel("auto", local_batches=True))
# ```
#
# or from the command line, the same command on every host with its own `--process-id`:
#
# ```bash
# flowzoo train fm_moons --coordinator host0:1234 --num-processes 4 --process-id $I
# ```
#
# Each process computes its rows of every batch; only process 0 writes `metrics.jsonl`,
# plots and the summary; checkpoints are written by all processes together (orbax) and a
# SIGTERM on any host stops all of them at the same step. The Scaling page of the docs has
# the details and the measured multi-process tests.
