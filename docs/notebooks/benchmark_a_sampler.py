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
# # Benchmark your own sampler on a target with ground truth
#
# A sampler in flowzoo's registry is a function
# `(key, problem, n, num_steps, **options) -> (samples, SamplerInfo)`. Registered, it runs
# through the same harness as the built-in ones (`flowzoo bench samplers`): the same
# targets, budgets, metrics and noise floor. Here: a probability-flow ODE sampler with a
# plain Euler step, against DPM-Solver++(2M) and the EDM Heun sampler, on a
# 5 x 5 grid of Gaussians whose diffused score is known in closed form, so only the
# solver's error is measured.
#
# This notebook is executed by the test suite (`tests/test_notebooks.py`); its `assert`
# lines are part of that test. Source: `docs/notebooks/benchmark_a_sampler.py`.

# %%
import jax.numpy as jnp
import matplotlib.pyplot as plt

from flowzoo import bench, samplers
from flowzoo.integrate import SolverConfig


def my_euler(key, problem, n, num_steps, **options):
    """The PF-ODE of the problem's SDE (t=T noise -> t=0 data), fixed-step Euler."""
    shape = (n, *problem.event_shape)
    out = samplers.pf_ode_sample(
        problem.sde, problem.score_t, key, shape, solver=SolverConfig("euler", num_steps)
    )
    return out.samples, samplers.SamplerInfo(out.nfe, jnp.nan)


# needs the SDE and its exact score; an ODE sampler; fixed steps of one score evaluation
# each (SamplerSpec's default nfe and steps_for: a budget of B evaluations buys B steps)
spec = samplers.SamplerSpec(my_euler, needs=(("sde",), ("score_t",)), kind="ode")
samplers.register_sampler("my_euler", spec)

# %% [markdown]
# `run_cell(target, sampler, budget, seed, settings)` draws `n` samples with a budget of
# score evaluations (NFE) and scores them against exact samples of the target: energy
# distance, MMD, sliced W2, moment errors, mode coverage, NFE and wall time. The noise floor
# is the same metrics between two independent exact draws of size `n`.

# %%
target = bench.TARGETS["grid25"]()
settings = bench.Settings(n=1000, repeats=1)
floor = bench.noise_floor(target, 0, settings)["energy_distance"]
budgets = [3, 6, 12, 24]
curves = {}
for name in ["my_euler", "dpm_solver_2m", "edm_heun"]:
    cells = [bench.run_cell(target, name, b, 0, settings) for b in budgets]
    curves[name] = [(c["nfe"], c["energy_distance"]) for c in cells]
    print(name, [f"{nfe}: {ed:.4f}" for nfe, ed in curves[name]])
print(f"noise floor {floor:.4f}")

# %% [markdown]
# Euler's error falls quickly with the budget; the second-order multistep solver is at the
# noise floor from 6 evaluations. EDM's Heun sampler starts from `sigma_max = sigma(T)`,
# about 152 for this VP SDE (EDM itself uses 80), and needs more steps to come down from
# there. (Energy distance is an unbiased estimate, so values at the floor can be negative.)

# %%
euler_ed = dict(curves["my_euler"])
dpm_ed = dict(curves["dpm_solver_2m"])
assert euler_ed[24] < euler_ed[3]  # more steps, less error
assert dpm_ed[6] < euler_ed[6]  # a better solver at the same budget
assert abs(dpm_ed[6]) < 3 * floor  # at the noise floor

fig, ax = plt.subplots(figsize=(5.5, 3.8))
for name, points in curves.items():
    nfe, ed = zip(*points, strict=True)
    ax.plot(nfe, [max(e, 1e-5) for e in ed], marker="o", label=name)
ax.axhline(max(floor, 1e-5), color="k", ls=":", label="noise floor")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("score evaluations (NFE)")
ax.set_ylabel("energy distance to exact samples")
ax.legend()
plt.show()

# %%
del samplers.SAMPLERS["my_euler"]  # leave the registry as it was
