"""XLA compiler options of flowzoo's compiled programs.

On CPU, XLA hands every convolution to YNNPACK by default. At the shapes of image networks
at small batch, YNNPACK's convolutions run below the rate of XLA's Eigen convolution: its
kernel-gradient and 1x1 convolutions in a train step, and its forward convolutions in
sampling and feature extraction (``benchmarks/accelerator.py`` measures both, the figures
are in ``docs/benchmarks.md``). flowzoo therefore compiles its programs on CPU with YNNPACK
kept for dots and reductions only: XLA's defaults less ``individual_convolution``. That
covers the train steps (:mod:`flowzoo.train`), a run's sampling and likelihoods
(:class:`flowzoo.zoo.Run`), the train step a ``--dry-run`` reports, the ODE solves of
learned benchmark targets and of reflow, and the Inception features of FID. Programs
without a convolution compile to the same code.

``FLOWZOO_CPU_CONV=ynnpack`` keeps XLA's defaults (for comparisons); ``eigen`` (the default)
applies the options. Other backends compile with their defaults. :func:`jit` is
``jax.jit`` with these options; ``flowzoo.train.jit`` is the public name.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax

CPU_CONV_ENV = "FLOWZOO_CPU_CONV"
CPU_CONV_CHOICES = ("eigen", "ynnpack")

# XLA's default YNNPACK fusion types on CPU, less INDIVIDUAL_CONVOLUTION. A list option
# set through compiler options takes exact enum names (the env flag's "-type" form is
# refused there); tests/test_compile.py checks that this list keeps every dot and
# reduction fusion of the default and moves only the convolutions.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def cpu_conv_choice() -> str:
    """The CPU convolution backend flowzoo's programs compile with (``FLOWZOO_CPU_CONV``)."""
    choice = os.environ.get(CPU_CONV_ENV, "eigen").strip().lower() or "eigen"
    if choice not in CPU_CONV_CHOICES:
        raise ValueError(
            f"{CPU_CONV_ENV}={choice!r}: expected one of {', '.join(CPU_CONV_CHOICES)}"
        )
    return choice


@functools.cache
def _cpu_options_accepted() -> bool:
    """Whether this jaxlib takes the options (an XLA without the option refuses it)."""
    try:
        x = jax.device_put(jax.numpy.zeros(1), jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(x).compile()
    except Exception:  # noqa: BLE001 - any refusal means: compile with the defaults
        return False
    return True


def compiler_options(backend: str | None = None) -> dict[str, str] | None:
    """The options flowzoo's programs compile with on ``backend`` (default: JAX's default
    backend): the CPU options above, or ``None`` (the backend's defaults)."""
    backend = backend or jax.default_backend()
    if backend != "cpu" or cpu_conv_choice() != "eigen" or not _cpu_options_accepted():
        return None
    return dict(_CPU_OPTIONS)


class _TopLevelOptions:
    """``jax.jit(fn)`` compiled with ``options`` where JAX allows them: at top level.

    JAX refuses compiler options on a jit traced inside another transformation
    (``jax.jit``, ``vmap``, ``grad``, ``make_jaxpr``, ``scan``); there the plain jit runs,
    and the enclosing program compiles with its own options. ``lower``, ``trace`` and the
    other attributes are the top-level jit's.
    """

    def __init__(self, fn: Callable, options: dict[str, str], kwargs: dict[str, Any]):
        self._top = jax.jit(fn, compiler_options=options, **kwargs)
        self._nested = jax.jit(fn, **kwargs)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
            return self._nested(*args, **kwargs)
        try:
            return self._top(*args, **kwargs)
        except ValueError as err:  # traced inside a transformation through closed-over values
            if "compiler_options" not in str(err):
                raise
            return self._nested(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._top, name)


def jit(fn: Callable, **kwargs: Any) -> Callable:
    """``jax.jit(fn, **kwargs)`` compiled with :func:`compiler_options` of the default
    backend: on CPU, XLA's Eigen convolutions in place of YNNPACK's (the same program
    elsewhere). A call traced inside another transformation (``jit``, ``vmap``, ``grad``,
    ``scan``) compiles with the enclosing program's options, since JAX takes compiler
    options only at top level. ``lower``, ``trace`` and ``eval_shape`` are the top-level
    jit's. Compile your own programs of flowzoo's image networks with it to get the
    convolutions flowzoo's train steps, sampling and FID use."""
    options = compiler_options()
    if options is None:
        return jax.jit(fn, **kwargs)
    return _TopLevelOptions(fn, options, kwargs)
