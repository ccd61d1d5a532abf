"""``Layers``: a stack's params held as one pytree per layer, and the one saved layout.

Every :func:`~flowzoo.bijectors.stack` saves and restores its params stacked along a leading
layer axis (the *saved layout*). In memory, a short stack of many parameters holds them as a
:class:`Layers` node instead, one pytree per layer: its Python loop then reads each layer's
arrays as they are, where stacked arrays would be copied out layer by layer and each step's
gradients concatenated back (on CPU that costs a large coupling flow about a tenth of its
train step). :func:`saved_layout` turns every ``Layers`` node of a tree into the stacked
arrays that :mod:`flowzoo.checkpoint` writes, and :func:`memory_layout` turns such a tree
back into the layout of a target tree, so what is saved never depends on how a stack loops.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec


@jax.tree_util.register_pytree_with_keys_class
class Layers:
    """The params of a stack's ``num`` layers, one pytree each (a registered pytree node).

    ``layers[i]`` is layer ``i``'s params; indexing, ``len`` and iteration work as on a
    tuple. :func:`saved_layout` gives the stacked equivalent.
    """

    __slots__ = ("layers",)

    def __init__(self, layers):
        self.layers = tuple(layers)

    def tree_flatten_with_keys(self):
        return [(jax.tree_util.SequenceKey(i), p) for i, p in enumerate(self.layers)], None

    def tree_flatten(self):
        return self.layers, None

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    def __repr__(self) -> str:
        return f"Layers({len(self.layers)} layers)"


def _is_layers(x: Any) -> bool:
    return isinstance(x, Layers)


def _stack_leaves(*leaves):
    """Stack one leaf of every layer: arrays, or abstract ``ShapeDtypeStruct``s."""
    first = leaves[0]
    if isinstance(first, jax.ShapeDtypeStruct):
        sharding = first.sharding
        if isinstance(sharding, NamedSharding):  # the layer axis is not split
            sharding = NamedSharding(sharding.mesh, PartitionSpec(None, *sharding.spec))
        return jax.ShapeDtypeStruct((len(leaves), *first.shape), first.dtype, sharding=sharding)
    if isinstance(first, np.ndarray | np.generic):
        return np.stack(leaves)
    return jnp.stack(leaves)


def saved_layout(tree: Any) -> Any:
    """``tree`` with every :class:`Layers` node replaced by its layers' leaves stacked along
    a new leading axis (concrete arrays, or ``jax.ShapeDtypeStruct`` for abstract trees)."""
    return jax.tree.map(
        lambda node: (
            jax.tree.map(_stack_leaves, *saved_layout(node.layers)) if _is_layers(node) else node
        ),
        tree,
        is_leaf=_is_layers,
    )


def memory_layout(saved: Any, like: Any) -> Any:
    """``saved`` (a tree in the saved layout) in the layout of ``like``: wherever ``like``
    has a :class:`Layers` node, the stacked arrays of ``saved`` are cut into its layers."""

    def convert(node, stored):
        if not _is_layers(node):
            return stored
        n = len(node)
        return Layers(
            memory_layout(jax.tree.map(lambda a, i=i: a[i], stored), node[i]) for i in range(n)
        )

    return jax.tree.map(convert, like, saved, is_leaf=_is_layers)
