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
