"""benchmarks/adm_layers.py: the formulations it times against each other compute one function.

The script times ``nets.adm_unet``'s GroupNorm and attention against their direct
formulations (``flax.linen.GroupNorm``; q, k, v sliced from the interleaved projection, as
torchcfm's ``QKVAttentionLegacy``). Here, on small shapes: the two agree in value and in
every gradient to float32 rounding (an independent check of the shipped layers, which the
torchcfm comparison in tests/nets/test_adm_unet.py makes only where torch is installed),
the layers found in a UNet are its GroupNorms and attention blocks, and the layer timing
runs.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def adm_layers(load_benchmark):
    return load_benchmark("adm_layers")


@pytest.mark.slow
def test_groupnorm_formulations_agree(adm_layers):
    """flowzoo's GroupNorm(32) + SiLU against flax.linen.GroupNorm's, 4 and 1 channels per
    group, inputs of mean 0.5 and scale 2: values and gradients within 1e-5 (relative to
    the largest magnitude of each array; float32 rounding is about 1e-7)."""
    shapes = [(2, 8, 8, 128), (3, 4, 4, 32)]
    assert adm_layers.max_relative_difference("groupnorm", shapes) < 1e-5


@pytest.mark.slow
def test_attention_formulations_agree(adm_layers):
    """The head-major attention block against the sliced transcription of torchcfm's, with
    2 and 4 heads (parameters perturbed off the zero-initialised output projection, so the
    attention path carries signal): values and gradients within 1e-5."""
    shapes = [((2, 8, 8, 64), 2), ((2, 4, 4, 128), 4)]
    assert adm_layers.max_relative_difference("attention", shapes) < 1e-5


@pytest.mark.slow
def test_a_small_unet_has_its_layers_found_and_timed(adm_layers):
    """The quick config's UNet (two levels, attention at 16x16): 2 GroupNorms per residual
    block plus one per attention block and the output's, its three kinds of convolution;
    the layer cases time."""
    A = adm_layers.common.accelerator()
    cfg = A.recipe("fm_cifar10", ["train.batch_size=2", *A.QUICK_FM])
    shapes = adm_layers.layer_shapes(cfg, 2)
    assert shapes["attention"] and all(s[0][1:3] == (16, 16) for s in shapes["attention"])
    assert len(shapes["groupnorm"]) > 2 * len(shapes["attention"])
    kernels = sorted({(k, stride) for _, _, k, stride, _ in shapes["conv"]})
    assert kernels == [(1, 1), (3, 1), (3, 2)]  # 3x3, the skip's 1x1, the downsampling
    rounds = adm_layers.common.interleaved_steady(
        adm_layers.layer_cases("attention", shapes["attention"], None), repeats=1
    )
    assert set(rounds) == {"flowzoo", "slices"}
    assert all(r["step_s"]["median"] > 0 for r in rounds.values())


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (1, 1, 0)])
def test_unet_convolution_agrees_with_flax(adm_layers, kernel, stride, padding):
    """The UNet's convolution (torch's symmetric zero padding, also at stride 2 on an even
    size, where ``"SAME"`` pads only the far side) against ``flax.linen.Conv`` with explicit
    padding and the same kernel: outputs and the gradients for the input, kernel and bias
    within 1e-5 of the largest magnitude of each array (float32 rounding is about 1e-7)."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 16)), jnp.float32)
    params = {
        "params": {
            "kernel": jnp.asarray(rng.standard_normal((kernel, kernel, 16, 24)) / 12.0),
            "bias": jnp.asarray(rng.standard_normal(24), jnp.float32),
        }
    }
    cot = None
    results = []
    for module in (
        nn.Conv(24, (kernel, kernel), (stride, stride), [(padding, padding)] * 2),
        adm_layers._unet()._Conv2d(24, kernel, stride, padding),
    ):
        y, vjp = jax.vjp(module.apply, params, x)
        if cot is None:
            cot = jnp.asarray(rng.standard_normal(y.shape), y.dtype)
        dp, dx = vjp(cot)
        results.append([y, dx, dp["params"]["kernel"], dp["params"]["bias"]])
    for u, v in zip(results[1], results[0], strict=True):
        assert u.shape == v.shape
        assert float(jnp.max(jnp.abs(u - v))) <= 1e-5 * float(jnp.max(jnp.abs(v)))
