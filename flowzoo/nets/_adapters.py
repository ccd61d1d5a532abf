"""Bring your own network: flax.linen, flax.nnx, Equinox and Haiku modules as ``Network``.

Each adapter returns a :class:`Network` ``(init, apply)`` whose ``params`` are a plain pytree
of arrays (nested dicts with string or integer keys), so the optimizer, ``jax.jit``, the
``flowzoo.train`` loop and ``flowzoo.checkpoint`` treat them like flowzoo's own networks.

Argument convention: the adapters pass their positional arguments through to the module, so
one adapter serves both of flowzoo's conventions: a conditioner is called as
``apply(params, x[, context])``, a time-dependent field (velocity, score) as
``apply(params, t, x[, context])``, and the module receives ``(x[, context])`` or
``(t, x[, context])`` with the leading batch axis of ``x``. Trailing ``None`` arguments are
dropped first (the losses pass ``context=None`` positionally), so a module without a
``context`` argument serves an unconditional model. Keyword arguments are passed through.

Modules with mutable state (batch statistics, RNG streams) are refused
with an error naming the collection: ``apply`` is a pure function of ``params`` and returns
only the output, so state updates would be lost silently.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import jax

from .._types import Array, Key, Params
from ._mlp import Network


def _args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` without its trailing ``None`` entries (an absent ``context``)."""
    end = len(args)
    while end and args[end - 1] is None:
        end -= 1
    return args[:end]


def _optional(module: str, package: str, adapter: str) -> Any:
    """Import the optional dependency ``module`` or fail naming it and its pip package."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"nets.{adapter} needs {package}, which is not installed: pip install {package}"
        ) from err


def _path_name(path: tuple[Any, ...]) -> str:
    return ".".join(str(_key_of(k)) for k in path) or "<root>"


def _key_of(k: Any) -> Any:
    """The string or integer of one pytree path entry (attribute, dict key or index)."""
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return k


def from_linen(module: Any) -> Network:
    """A ``flax.linen`` module as a :class:`Network`.

    ``init(key, *inputs)`` runs ``module.init`` on the example inputs and returns
    ``{"params": ...}``; ``apply(params, *inputs, **kwargs)`` is ``module.apply``. Inputs
    follow the module's own ``__call__`` (see the module docstring for the conventions).

    Raises:
      ValueError: at ``init``, the module created a collection other than ``"params"``
        (``"batch_stats"`` of ``nn.BatchNorm``, a collection written by ``self.variable``),
        named. A module that draws random numbers (``nn.Dropout(deterministic=False)``)
        needs its stream at every call: ``apply(params, *inputs, rngs={"dropout": key})``.
    """

    def init(key: Key, *inputs: Any, **kwargs: Any) -> Params:
        variables = module.init(key, *_args(inputs), **kwargs)
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise ValueError(
                f"nets.from_linen: the module creates the collection(s) {extra} besides "
                "'params'; mutable state (e.g. batch statistics) is not supported: apply is "
                "a pure function of the params"
            )
        return {"params": dict(variables.get("params", {}))}

    def apply(params: Params, *inputs: Any, **kwargs: Any) -> Array:
        return module.apply(params, *_args(inputs), **kwargs)

    return Network(init, apply)


def from_nnx(factory: Callable[[Any], Any]) -> Network:
    """A ``flax.nnx`` module as a :class:`Network`.

    An NNX module owns its parameters, so the adapter takes a factory
    ``lambda rngs: Module(..., rngs=rngs)``. ``init(key, *inputs)`` builds
    ``factory(nnx.Rngs(key))`` (the inputs are accepted for the common signature and unused:
    NNX modules know their shapes) and returns its ``nnx.Param`` state as a nested dict
    (``nnx.to_pure_dict``); ``apply(params, *inputs, **kwargs)`` merges the params into the
    module's graph and calls it.

    Raises:
      ValueError: when the module is built, if it holds variables other than ``nnx.Param``
        (``BatchStat`` of ``nnx.BatchNorm``, the ``RngKey``/``RngCount`` of an RNG stream
        kept by ``nnx.Dropout(..., rngs=rngs)``), naming their types and paths.
    """
    from flax import nnx

    abstract = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
    graphdef, abstract_params, rest = nnx.split(abstract, nnx.Param, ...)
    others = jax.tree_util.tree_flatten_with_path(
        rest, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )[0]
    if others:
        found = sorted({f"{type(v).__name__} at {_path_name(p)}" for p, v in others})
        raise ValueError(
            "nets.from_nnx: the module holds variables other than nnx.Param: "
            f"{'; '.join(found)}. Mutable state (batch statistics, RNG streams) is not "
            "supported: apply is a pure function of the params"
        )

    def init(key: Key, *inputs: Any) -> Params:
        del inputs
        _, params, _ = nnx.split(factory(nnx.Rngs(key)), nnx.Param, ...)
        return nnx.to_pure_dict(params)

    def apply(params: Params, *inputs: Any, **kwargs: Any) -> Array:
        state = jax.tree.map(lambda v: v, abstract_params)  # a fresh copy to fill in
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)(*_args(inputs), **kwargs)

    return Network(init, apply)


def _nested(flat: list[tuple[tuple[Any, ...], Any]]) -> dict:
    """``{path: leaf}`` as nested dicts keyed by the path's entries (as strings)."""
    tree: dict = {}
    for path, leaf in flat:
        node = tree
        for k in path[:-1]:
            node = node.setdefault(str(_key_of(k)), {})
        node[str(_key_of(path[-1]))] = leaf
    return tree


def _leaf_at(tree: dict, path: tuple[Any, ...]) -> Any:
    for k in path:
        tree = tree[str(_key_of(k))]
    return tree


def from_equinox(factory: Callable[[Key], Any]) -> Network:
    """An Equinox module as a :class:`Network`.

    An Equinox module owns its parameters, so the adapter takes a factory
    ``lambda key: Module(..., key=key)``. The module's floating-point arrays are the params
    (``eqx.partition(module, eqx.is_inexact_array)``), returned by ``init(key, *inputs)`` as
    nested dicts keyed by attribute names and indices (the inputs are accepted for the common
    signature and unused); everything else (activations, sizes, integer arrays) is fixed when
    the adapter is built, from ``factory(jax.random.key(0))``. ``apply(params, *inputs,
    **kwargs)`` recombines and calls the module on the whole batch: Equinox layers take single
    examples, so ``jax.vmap`` inside the module's ``__call__``.

    Raises:
      ImportError: equinox is not installed (``pip install equinox``).
      ValueError: the module holds an ``eqx.nn.StateIndex`` (``eqx.nn.BatchNorm``, spectral
        norm), i.e. needs an ``eqx.nn.State``; its path is named.
    """
    eqx = _optional("equinox", "equinox", "from_equinox")

    def inexact(leaf: Any) -> bool:
        return isinstance(leaf, jax.ShapeDtypeStruct) and jax.dtypes.issubdtype(
            leaf.dtype, jax.numpy.inexact
        )

    abstract = eqx.filter_eval_shape(factory, jax.random.key(0))
    stateful = [
        _path_name(p)
        for p, leaf in jax.tree_util.tree_flatten_with_path(
            abstract, is_leaf=lambda v: isinstance(v, eqx.nn.StateIndex)
        )[0]
        if isinstance(leaf, eqx.nn.StateIndex)
    ]
    if stateful:
        raise ValueError(
            f"nets.from_equinox: the module needs an eqx.nn.State (StateIndex at {stateful}, "
            "e.g. BatchNorm); mutable state is not supported: apply is a pure function of "
            "the params"
        )
    flat, treedef = jax.tree_util.tree_flatten_with_path(eqx.filter(abstract, inexact))
    paths = [p for p, _ in flat]
    static = eqx.filter_jit(
        lambda: eqx.filter(factory(jax.random.key(0)), eqx.is_inexact_array, inverse=True)
    )()

    def init(key: Key, *inputs: Any) -> Params:
        del inputs
        params = eqx.filter(factory(key), eqx.is_inexact_array)
        return _nested(jax.tree_util.tree_flatten_with_path(params)[0])

    def apply(params: Params, *inputs: Any, **kwargs: Any) -> Array:
        leaves = treedef.unflatten([_leaf_at(params, p) for p in paths])
        return eqx.combine(leaves, static)(*_args(inputs), **kwargs)

    return Network(init, apply)


def from_haiku(fn: Callable[..., Array]) -> Network:
    """A Haiku function as a :class:`Network`.

    ``fn(*inputs)`` builds Haiku modules and calls them; it is transformed with
    ``hk.transform`` (``hk.without_apply_rng``: ``apply`` takes no key, so ``fn`` must not
    call ``hk.next_rng_key`` when applied). ``init(key, *inputs)`` traces ``fn`` on the
    example inputs and returns Haiku's params dict (``{"module/~/layer": {"w": ..., "b":
    ...}}``); ``apply(params, *inputs, **kwargs)`` calls ``fn``.

    Raises:
      ImportError: dm-haiku is not installed (``pip install dm-haiku``).
      ValueError: at ``init``, ``fn`` creates state (``hk.get_state``/``hk.set_state``,
        ``hk.BatchNorm``'s moving averages); the state's modules are named.
    """
    hk = _optional("haiku", "dm-haiku", "from_haiku")
    with_state = hk.transform_with_state(fn)
    pure = hk.without_apply_rng(hk.transform(fn))

    def init(key: Key, *inputs: Any, **kwargs: Any) -> Params:
        params, state = with_state.init(key, *_args(inputs), **kwargs)
        if jax.tree.leaves(state):
            names = sorted(
                f"{module}/{name}" for module, entries in state.items() for name in entries
            )
            raise ValueError(
                f"nets.from_haiku: the function creates the state {names} "
                "(hk.get_state/hk.set_state, e.g. BatchNorm); mutable state is not "
                "supported: apply is a pure function of the params"
            )
        return params

    def apply(params: Params, *inputs: Any, **kwargs: Any) -> Array:
        return pure.apply(params, *_args(inputs), **kwargs)

    return Network(init, apply)
