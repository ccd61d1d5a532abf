"""jaxtyping aliases used in flowzoo's public signatures.

Shapes in docstrings use ``batch`` for the leading axis and ``*event`` for the event shape
(``(2,)`` for a 2-D toy density, ``(H, W, C)`` for an NHWC image).
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, PyTree, Shaped

Key = PRNGKeyArray
"""A JAX PRNG key (new-style ``jax.random.key`` or legacy ``uint32[2]``)."""

Params = PyTree[Any]
"""A parameter pytree; whatever a factory's ``init`` returned."""

Batch = Float[Array, "batch *event"]
"""A batch of points with a leading batch axis."""

Context = Float[Array, "batch *context"] | None
"""Optional conditioning array with the same leading batch axis as the data."""

LogDet = Float[Array, " batch"]
"""Per-example log-absolute-determinant of a Jacobian."""

LogProb = Float[Array, " batch"]
"""Per-example log-density in nats."""

Scalar = Float[Array, ""]

__all__ = [
    "Array",
    "ArrayLike",
    "Batch",
    "Context",
    "Float",
    "Key",
    "LogDet",
    "LogProb",
    "Params",
    "PyTree",
    "Scalar",
    "Shaped",
]


def count_arg(value: Any, name: str, what: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; a ``TypeError``/``ValueError`` naming ``name``
    otherwise (so ``num_layers=2.5`` fails where it is passed, not later)."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{what}: {name} must be >= {minimum}, got {value}")
    return int(value)


def widths_arg(value: Any, name: str, what: str) -> tuple[int, ...]:
    """``value`` as a tuple of layer widths (ints >= 1); a clear error for a bare int."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise TypeError(
            f"{what}: {name} must be a sequence of layer widths such as ({value}, {value}), "
            f"got the int {value}; use ({value},) for one hidden layer"
        )
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{what}: {name} must be a sequence of ints, got {value!r}") from None
    return tuple(count_arg(w, f"{name} entries", what) for w in items)
