"""The Distribution protocol: the model tuple of every flowzoo family that has a density."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np

from .._types import Context


class Distribution(NamedTuple):
    """A density over ``(batch, *event_shape)`` arrays as pure functions over explicit params.

    Coupling flows, Glow, CNFs, flow-matching models, the probability-flow ODE of a score
    model and dequantized image models are all this tuple:

    * ``init(key, x, context=None) -> params`` (``x``: a data batch; may drive data-dependent
      initialisation such as ActNorm).
    * ``log_prob(params, x, context=None) -> (batch,)`` log-density in nats; deterministic.
    * ``sample(params, key, n, context=None, temperature=1.0) -> (n, *event_shape)``.
    * ``sample_and_log_prob(params, key, n, context=None, temperature=1.0)
      -> ((n, *event_shape), (n,))``; the log-density is that of the untempered model.
    * ``event_shape``: the shape of one example.
    * ``log_prob_estimate(params, key, x, context=None) -> (batch,)`` or ``None``: a
      stochastic, unbiased (or bound) estimate of ``log_prob`` that needs a key, where the
      family has a cheaper one than ``log_prob`` (Hutchinson probes of a CNF, a fresh
      dequantization draw). Training uses it when present
      (:func:`flowzoo.flows.nll_loss`); :func:`log_prob_estimate` falls back to ``log_prob``.

    ``context`` (optional) conditions the density; it has a leading axis equal to the batch
    (for ``log_prob``) or to ``n`` (for sampling: one sample per context row).
    ``temperature`` scales the standard deviation of the base noise (Kingma & Dhariwal 2018).
    """

    init: Callable
    log_prob: Callable
    sample: Callable
    sample_and_log_prob: Callable
    event_shape: tuple[int, ...] = ()
    log_prob_estimate: Callable | None = None


def log_prob_estimate(dist: Distribution, params, key, x, context: Context = None):
    """``dist.log_prob_estimate(params, key, x, context)``, or the exact ``log_prob`` if the
    distribution has no stochastic estimator. ``(batch,)`` nats."""
    if dist.log_prob_estimate is None:
        return dist.log_prob(params, x, context)
    return dist.log_prob_estimate(params, key, x, context)


def check_count(n, what: str) -> int:
    """Return ``n`` as an int, raising ``ValueError``/``TypeError`` unless it is an int >= 1."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{what}: n must be an int (the number of samples), got {n!r}")
    if n < 1:
        raise ValueError(f"{what}: n must be >= 1, got {n}")
    return int(n)


def check_context(n: int, context: Context, what: str) -> None:
    """Raise a clear error when ``context`` does not have leading size ``n``."""
    if context is not None and context.shape[0] != n:
        raise ValueError(
            f"{what}: context has leading size {context.shape[0]} but {n} rows were requested; "
            "pass one context row per sample (e.g. jnp.repeat(context, n, axis=0))"
        )


def check_event(x, event_shape: tuple[int, ...], what: str) -> None:
    """Raise a clear error when ``x`` is not ``(batch, *event_shape)`` with ``batch >= 1`` real
    numbers (a float or integer dtype)."""
    if tuple(x.shape[1:]) != tuple(event_shape) or x.ndim != len(event_shape) + 1:
        raise ValueError(
            f"{what}: expected an array of shape (batch, {', '.join(map(str, event_shape))}), "
            f"got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{what}: x is an empty batch (shape {tuple(x.shape)})")
    dtype = getattr(x, "dtype", np.float32)
    if not (
        jax.numpy.issubdtype(dtype, jax.numpy.floating)
        or jax.numpy.issubdtype(dtype, jax.numpy.integer)
    ):
        raise TypeError(f"{what}: x must hold real numbers, got dtype {dtype}")


def check_key(key, what: str) -> None:
    """Raise ``TypeError`` unless ``key`` is a JAX PRNG key: a typed key
    (``jax.random.key(seed)``) or a legacy raw ``uint32[..., 2]`` key (``PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return
    if dtype == np.uint32 and getattr(key, "shape", ())[-1:] == (2,):
        return
    got = f"{type(key).__name__} {key!r}" if dtype is None else f"an array {dtype}{key.shape}"
    raise TypeError(f"{what}: key must be a PRNG key such as jax.random.key(0), got {got}")


def params_checker(init: Callable, event_shape: tuple[int, ...], what: str) -> Callable:
    """``check(params, context)``: raise a clear ``ValueError`` when ``params`` are not the
    tree ``init`` makes for this model (another architecture, or made with a context when
    none is given, or the other way round), instead of an error deep inside a network.

    The expected tree is remembered when the model's ``init`` calls ``check.remember(params,
    context)``, else computed by ``jax.eval_shape(init, ...)`` (tracing only), once per
    context shape; only structure and leaf shapes are compared, so the check also works on
    traced params inside ``jit``.
    """
    expected: dict = {}
    x = jax.ShapeDtypeStruct((2, *event_shape), jax.numpy.float32)

    def signature(context) -> tuple | None:
        return None if context is None else (tuple(context.shape[1:]), context.dtype)

    def expected_shapes(ctx):
        """The params shapes ``init`` makes; ``None`` when init cannot run (e.g. a CNF of a
        bare apply function): then nothing is checked."""
        c = None if ctx is None else jax.ShapeDtypeStruct((2, *ctx[0]), ctx[1])
        try:
            return jax.eval_shape(init, jax.random.key(0), x, c)
        except Exception as err:  # noqa: BLE001
            if ctx is not None and expected_shapes(None) is not None:
                raise ValueError(
                    f"{what}: this model takes no context, or not of shape {ctx[0]} "
                    f"({type(err).__name__}: {str(err)[:200]})"
                ) from err
            return None

    def remember(params, context=None) -> None:
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.float32), params)
        expected.setdefault(signature(context), shapes)

    def check(params, context=None) -> None:
        ctx = signature(context)
        if ctx not in expected:
            expected[ctx] = expected_shapes(ctx)
        if expected[ctx] is None:
            return
        problem = _tree_mismatch(expected[ctx], params)
        if problem is not None:
            hint = (
                "made without a context, or for another context shape"
                if ctx is not None
                else "made with a context (then pass it)"
            )
            raise ValueError(
                f"{what}: params do not fit this model ({problem}); were they initialised "
                f"for another architecture, or {hint}?"
            )

    check.remember = remember
    return check


def _tree_mismatch(expected, params) -> str | None:
    """A description of the first structural or shape difference, or ``None``."""
    want = jax.tree_util.tree_flatten_with_path(expected)[0]
    got = jax.tree_util.tree_flatten_with_path(params)[0]
    want_paths = {jax.tree_util.keystr(p): leaf for p, leaf in want}
    got_paths = {jax.tree_util.keystr(p): leaf for p, leaf in got}
    if want_paths.keys() != got_paths.keys():
        missing = sorted(want_paths.keys() - got_paths.keys())
        extra = sorted(got_paths.keys() - want_paths.keys())
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        return f"{len(got_paths)} arrays where {len(want_paths)} are expected; {what}"
    for path, leaf in want_paths.items():
        shape = tuple(getattr(got_paths[path], "shape", np.shape(got_paths[path])))
        if shape != tuple(leaf.shape):
            return f"{path} has shape {shape}, expected {tuple(leaf.shape)}"
    return None


def as_real(x, at_least_float32: bool = False):
    """``x`` with an integer dtype cast to float32 (data of grey levels or counts); floating
    inputs pass unchanged, or, with ``at_least_float32`` (ODE solves), are widened to float32
    when narrower. Call after :func:`check_event`."""
    jnp = jax.numpy
    if jnp.issubdtype(x.dtype, jnp.integer):
        return jnp.asarray(x, jnp.float32)
    if at_least_float32:
        return jnp.asarray(x, jnp.promote_types(x.dtype, jnp.float32))
    return x
