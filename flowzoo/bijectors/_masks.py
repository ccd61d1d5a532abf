"""Binary masks for coupling layers.

A mask is a boolean numpy array of the event shape. ``True`` marks the entries that pass
through a coupling unchanged and condition the transformation of the ``False`` entries
(``y = m * x + (1 - m) * transform(x; conditioner(m * x))``, Dinh et al. 2017).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    return (int(event_shape),) if np.ndim(event_shape) == 0 else tuple(int(s) for s in event_shape)


def half_mask(event_shape: int | Sequence[int], parity: int = 0) -> np.ndarray:
    """First half of the last axis (``parity=0``) or second half (``parity=1``) kept.

    For odd sizes the kept half is the smaller one when ``parity=0``.
    """
    shape = _shape(event_shape)
    n = shape[-1]
    line = np.arange(n) < n // 2
    if parity % 2:
        line = ~line
    return np.broadcast_to(line, shape).copy()


def alternating_mask(event_shape: int | Sequence[int], parity: int = 0) -> np.ndarray:
    """Every other entry of the last axis kept (even indices for ``parity=0``)."""
    shape = _shape(event_shape)
    line = np.arange(shape[-1]) % 2 == parity % 2
    return np.broadcast_to(line, shape).copy()


def channel_mask(event_shape: Sequence[int], parity: int = 0) -> np.ndarray:
    """Channel mask for ``(H, W, C)`` images: the first half of the channels kept.

    This is :func:`half_mask` on the channel (last) axis, named for the RealNVP paper.
    """
    return half_mask(event_shape, parity)


def checkerboard_mask(event_shape: Sequence[int], parity: int = 0) -> np.ndarray:
    """Spatial checkerboard for ``(H, W)`` or ``(H, W, C)`` events (same for every channel).

    For a 1-D event it is the same as :func:`alternating_mask`.
    """
    shape = _shape(event_shape)
    if len(shape) == 1:
        return alternating_mask(shape, parity)
    h, w = shape[0], shape[1]
    board = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == parity % 2
    board = board.reshape((h, w) + (1,) * (len(shape) - 2))
    return np.broadcast_to(board, shape).copy()
