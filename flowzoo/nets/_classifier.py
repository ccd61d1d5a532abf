"""A small convolutional image classifier whose penultimate layer serves as a feature map.

``apply(params, x) -> (logits, features)``: ``x`` is ``(batch, H, W, C)`` with pixel
values scaled to ``[0, 1]``; ``logits`` ``(batch, num_classes)``, ``features``
``(batch, features)`` (the ReLU activations that feed the last layer). Used by the image
sample-quality metric (:func:`flowzoo.zoo.image_classifier`), trained per data set.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from .._types import Array, Key, Params
from ._mlp import Network


class _Classifier(nn.Module):
    num_classes: int
    channels: Sequence[int]
    features: int

    @nn.compact
    def __call__(self, x: Array) -> tuple[Array, Array]:
        h = nn.relu(nn.Conv(self.channels[0], (3, 3))(x))
        for ch in self.channels:  # each level halves the resolution: 28 -> 14 -> 7, 8 -> 4 -> 2
            h = nn.relu(nn.Conv(ch, (3, 3), strides=(2, 2))(h))
        feats = nn.relu(nn.Dense(self.features)(h.reshape(h.shape[0], -1)))
        return nn.Dense(self.num_classes)(feats), feats


def cnn_classifier(
    num_classes: int = 10, channels: Sequence[int] = (32, 64), features: int = 128
) -> Network:
    """A CNN ``x -> (logits, features)`` for NHWC images with values in ``[0, 1]``.

    A 3x3 convolution with ``channels[0]`` filters, then one stride-2 3x3 convolution per
    entry of ``channels`` (ReLU after each), a ``features``-unit ReLU layer (the feature map
    of the Fréchet distance) and a linear layer to ``num_classes`` logits. LeCun-normal
    initialisation (flax defaults). ``init(key, x)`` takes an example batch.
    """
    module = _Classifier(int(num_classes), tuple(int(c) for c in channels), int(features))

    @jax.jit
    def init(key: Key, x: Array) -> Params:
        return module.init(key, x)

    def apply(params: Params, x: Array) -> tuple[Array, Array]:
        return module.apply(params, x)

    return Network(init, apply)
