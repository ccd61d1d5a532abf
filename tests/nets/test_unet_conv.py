"""The UNet's im2col convolution equals ``lax.conv_general_dilated`` with SAME padding."""

import jax
import numpy as np
import pytest

from flowzoo.nets import Im2ColConv


@pytest.mark.parametrize(
    ("hw", "kernel", "stride"),
    [(8, 3, 1), (8, 3, 2), (7, 3, 2), (5, 1, 1), (6, 3, 1)],
)
def test_im2col_conv_matches_lax_conv(key, hw, kernel, stride):
    x = jax.random.normal(key, (2, hw, hw, 3))
    conv = Im2ColConv(4, (kernel, kernel), (stride, stride))
    params = conv.init(key, x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias
    ref = jax.lax.conv_general_dilated(
        x,
        params["params"]["kernel"],
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    ref = ref + params["params"]["bias"][None, None, None, :]
    np.testing.assert_allclose(conv.apply(params, x), ref, atol=1e-5, rtol=1e-5)
    assert conv.apply(params, x).shape == (2, -(-hw // stride), -(-hw // stride), 4)
