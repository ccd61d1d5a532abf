"""Every bijector flowzoo ships, with a small event shape, for the shared test battery.

Each entry builds ``(bijector, event_shape, context_shape)``. Issues that add bijectors add
them here, so the battery in ``test_battery.py`` covers them automatically.
"""

from __future__ import annotations

import jax
import numpy as np

from flowzoo import bijectors as bj
from flowzoo.flows import autoregressive_bijector, realnvp_bijector

_small = bj.mlp_conditioner((8,))


def _coupling(mask, **kw):
    return bj.affine_coupling(mask, _small, **kw)


REGISTRY = {
    "affine_coupling_half": lambda: (_coupling(bj.half_mask(4)), (4,), None),
    "affine_coupling_alternating_odd": lambda: (_coupling(bj.alternating_mask(5, 1)), (5,), None),
    "affine_coupling_sigmoid": lambda: (_coupling(bj.half_mask(3), scale="sigmoid"), (3,), None),
    "affine_coupling_exp": lambda: (_coupling(bj.half_mask(3, 1), scale="exp"), (3,), None),
    "affine_coupling_checkerboard_image": lambda: (
        _coupling(bj.checkerboard_mask((4, 4, 1))),
        (4, 4, 1),
        None,
    ),
    "affine_coupling_channel_image": lambda: (
        _coupling(bj.channel_mask((2, 2, 2), 1)),
        (2, 2, 2),
        None,
    ),
    "additive_coupling": lambda: (bj.additive_coupling(bj.half_mask(4), _small), (4,), None),
    "conditional_affine_coupling": lambda: (_coupling(bj.half_mask(3)), (3,), (2,)),
    "affine": lambda: (bj.affine((3,)), (3,), None),
    "fixed_affine": lambda: (
        bj.fixed_affine(np.array([1.0, -2.0]), np.array([0.5, 3.0])),
        (2,),
        None,
    ),
    "reverse": lambda: (bj.reverse(4), (4,), None),
    "random_permutation": lambda: (bj.random_permutation(jax.random.key(3), 5), (5,), None),
    "chain": lambda: (
        bj.chain(_coupling(bj.half_mask(3)), bj.reverse(3), bj.affine(3)),
        (3,),
        None,
    ),
    "invert_chain": lambda: (
        bj.invert(bj.chain(_coupling(bj.half_mask(3)), bj.reverse(3))),
        (3,),
        None,
    ),
    "stack": lambda: (bj.stack(_coupling(bj.alternating_mask(4)), 3), (4,), None),
    "stack_scan": lambda: (
        bj.stack(_coupling(bj.alternating_mask(4)), 3, max_unroll=0),
        (4,),
        None,
    ),
    "realnvp_bijector": lambda: (realnvp_bijector(3, 5, (8,)), (3,), None),
    # rational-quadratic spline couplings (issue 15); the conditional one's bound 1.0 puts
    # part of the N(0, 1) test batch in the identity tails
    "spline_coupling_checkerboard_image": lambda: (
        bj.spline_coupling(bj.checkerboard_mask((4, 4, 1)), _small, num_bins=4, bound=2.0),
        (4, 4, 1),
        None,
    ),
    # autoregressive layers (issue 15): MADE conditioners, affine and spline transformers
    "masked_autoregressive_spline_context": lambda: (
        bj.masked_autoregressive(3, bj.spline_transformer(4, 2.0), (8, 8)),
        (3,),
        (2,),
    ),
    "iaf_bijector_conditional": lambda: (
        autoregressive_bijector(3, 2, (8,), inverse=True),
        (3,),
        (2,),
    ),
    "conditional_spline_coupling": lambda: (
        bj.spline_coupling(bj.half_mask(3), _small, num_bins=4, bound=1.0),
        (3,),
        (2,),
    ),
    "conditional_realnvp_bijector": lambda: (realnvp_bijector(2, 4, (8,)), (2,), (3,)),
}


def _residual_block():
    """i-ResNet block (issue 4), exact log-det mode; Lip(g) <= 0.7**2, inverse to 1e-6."""
    from flowzoo.bijectors import residual_block

    return residual_block(3, (8,), lipschitz=0.7).bijector, (3,), None


REGISTRY["residual_block"] = _residual_block


# ----------------------------------------------------------------- image bijectors (issue 3)
def _image_entries():
    """ActNorm, 1x1 convolutions, squeeze, image couplings, factor-out and the multi-scale
    builders on tiny NHWC images (2x2x3, 4x4x1, 2x2x4, 2x2x2). Conditioners are ResNets
    with 4 hidden channels so the eager battery stays fast."""
    from flowzoo.flows import glow_bijector, realnvp_image_bijector

    conv = bj.resnet_conditioner(hidden=4, num_blocks=1)
    return {
        "actnorm": lambda: (bj.actnorm(), (2, 2, 3), None),
        "conv1x1_plain": lambda: (bj.conv1x1(lu=False), (2, 2, 3), None),
        "conv1x1_lu": lambda: (bj.conv1x1(lu=True), (2, 2, 3), None),
        # reshaping layers: (bijector, latent shape, context, data shape)
        "squeeze": lambda: (bj.squeeze(), (4, 4, 1), None, (2, 2, 4)),
        "unsqueeze": lambda: (bj.unsqueeze(), (2, 2, 4), None, (4, 4, 1)),
        "checkerboard_coupling_resnet": lambda: (
            bj.checkerboard_coupling((4, 4, 1), 1, conv),
            (4, 4, 1),
            None,
        ),
        "channel_coupling_resnet_context": lambda: (
            bj.channel_coupling((2, 2, 4), 1, conv),
            (2, 2, 4),
            (3,),
        ),
        "factor_out_split_prior": lambda: (
            bj.factor_out((2, 2, 4), bj.chain(bj.actnorm(), bj.conv1x1()), prior=conv),
            (2, 2, 4),
            None,
        ),
        # one level (squeeze, 2 steps, unsqueeze); the split prior is the entry above and
        # multi-level Glow is checked in tests/flows/test_glow.py (its init is slow to compile)
        "glow_bijector": lambda: (
            glow_bijector((2, 2, 2), levels=1, depth=2, hidden=4, num_blocks=0),
            (2, 2, 2),
            None,
        ),
        "realnvp_image_bijector": lambda: (
            realnvp_image_bijector((4, 4, 1), num_scales=2, hidden=4, num_blocks=0),
            (4, 4, 1),
            None,
        ),
    }


REGISTRY.update(_image_entries())
