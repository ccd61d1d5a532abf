"""The config error and the schema's value types: :class:`Spec`, :class:`SectionCheck` and
their constructors (``Int``, ``Float``, ``Positive``, ``Choice``, ``Widths``, ...).

This module imports nothing else from :mod:`flowzoo.zoo`: the schema (``_schema``), the
model registry (``_registry``), the family modules and the config tools (``_config``) all
build on it.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class ConfigError(ValueError):
    """A bad experiment name, config value or override (the message says which and why)."""


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __deepcopy__(self, memo: dict) -> _NoDefault:
        return self  # one sentinel: copies of a Spec keep ``default is NO_DEFAULT``


NO_DEFAULT: Any = _NoDefault()
"""The ``default`` of a :class:`Spec` whose key has none (required, or absent means
something the spec's docs say, such as "the path's own value")."""


class Spec(NamedTuple):
    """One config key: its kind, range, choices and default.

    ``kind``: ``"int"``, ``"float"`` (finite; ints accepted), ``"bool"``, ``"str"``, ``"ints"``
    / ``"floats"`` (a list of those, ``length`` = allowed list lengths), ``"width"`` (an int or a
    one-element list of one), ``"dict"`` (free keyword arguments checked by ``check``),
    ``"section"`` (a nested section).
    ``lo``/``hi``: bounds of the value (or of each list item); ``lo_open``/``hi_open`` make them
    strict. ``choices``: allowed values (strings). ``required``: must be present.
    ``check``: extra test of the value, returning an error text or ``None``.
    ``default``: the value a config that leaves the key out gets (the one home of that
    default: a config is completed from it before it is checked), or :data:`NO_DEFAULT`.
    """

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] = ()
    length: tuple[int, int] | None = None
    required: bool = False
    check: Callable[[Any], str | None] | None = None
    default: Any = NO_DEFAULT

    @property
    def has_default(self) -> bool:
        """Whether a config that leaves this key out is completed with :attr:`default`."""
        return self.default is not NO_DEFAULT

    def describe(self) -> str:
        """What is allowed, in words (``"an integer >= 1"``)."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        noun = {
            "int": "an integer",
            "float": "a finite number",
            "bool": "true or false",
            "str": "a string",
            "ints": "a list of integers",
            "floats": "a list of finite numbers",
            "width": "an integer (or a list holding one)",
            "dict": "a dict of keyword arguments",
            "section": "a section (a dict of keys)",
        }[self.kind]
        bounds = _bounds_text(self)
        if self.kind in ("ints", "floats"):
            n = self.length or (1, 1 << 30)
            count = f"{n[0]}" if n[0] == n[1] else f"at least {n[0]}" if n[1] >= 1 << 30 else f"{n}"
            return f"{noun} ({count} entries){', each ' + bounds if bounds else ''}"
        return f"{noun}{' ' + bounds if bounds else ''}"


def _bounds_text(spec: Spec) -> str:
    fmt = (lambda v: str(int(v))) if spec.kind in ("int", "ints", "width") else (lambda v: f"{v:g}")
    lo = None if spec.lo is None else fmt(spec.lo)
    hi = None if spec.hi is None else fmt(spec.hi)
    if lo is not None and hi is not None:
        return f"in {'(' if spec.lo_open else '['}{lo}, {hi}{')' if spec.hi_open else ']'}"
    if lo is not None:
        return f"{'>' if spec.lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if spec.hi_open else '<='} {hi}"
    return ""


def Int(lo: int | None = 0, hi: int | None = None, **kw) -> Spec:  # noqa: N802
    """An integer in ``[lo, hi]`` (default: >= 0)."""
    return Spec("int", lo, hi, **kw)


def Float(lo: float | None = None, hi: float | None = None, **kw) -> Spec:  # noqa: N802
    """A finite real number in the given range."""
    return Spec("float", lo, hi, **kw)


def Positive(**kw) -> Spec:  # noqa: N802
    """A finite real number > 0."""
    return Spec("float", 0.0, None, lo_open=True, **kw)


def Choice(*choices: str, **kw) -> Spec:  # noqa: N802
    """One of the given strings."""
    return Spec("str", choices=tuple(choices), **kw)


def Widths(**kw) -> Spec:  # noqa: N802
    """A list of layer widths (integers >= 1, at least one)."""
    return Spec("ints", 1, None, length=(1, 1 << 30), **kw)


def Bool(**kw) -> Spec:  # noqa: N802
    """``true`` or ``false``."""
    return Spec("bool", **kw)


def Seed(**kw) -> Spec:  # noqa: N802
    """A PRNG seed, in ``[0, 2^63 - 1]``."""
    return Int(0, 2**63 - 1, **kw)


def Tolerance(**kw) -> Spec:  # noqa: N802
    """A relative or absolute ODE solver tolerance, in ``(0, 1]``."""
    return Float(0.0, 1.0, lo_open=True, **kw)


BOOL = Bool()
STR = Spec("str")
SEED = Seed()
TOLERANCE = Tolerance()

Schema = Mapping[str, Spec]
"""A section's keys; a section check (:class:`SectionCheck`) may add cross-key rules."""


class SectionCheck(NamedTuple):
    """A rule over several keys of one section: ``test(section) -> error text or None``."""

    keys: tuple[str, ...]
    test: Callable[[dict[str, Any]], str | None]


def ordered(lo_key: str, hi_key: str) -> SectionCheck:
    """The rule ``section[lo_key] < section[hi_key]``."""
    return SectionCheck(
        (lo_key, hi_key),
        lambda s: None if s[lo_key] < s[hi_key] else f"{lo_key} must be < {hi_key}",
    )


def kwargs_of(fn: Callable, skip: tuple[str, ...] = ()) -> Callable[[Any], str | None]:
    """A ``check`` for a ``dict`` key: its keys must be keyword parameters of ``fn``."""
    params = inspect.signature(fn).parameters
    names = sorted(n for n, p in params.items() if p.default is not p.empty and n not in skip)

    def check(value: dict) -> str | None:
        bad = sorted(set(value) - set(names))
        if bad:
            return f"{bad[0]!r} is not an option of {fn.__name__}(); options: {', '.join(names)}"
        return None

    return check


def complete_section(schema: Schema, node: dict[str, Any]) -> dict[str, Any]:
    """A copy of the section ``node`` with every key it leaves out that has a default in
    ``schema`` set to that default (a copy of it); other keys are kept as they are."""
    missing = {k: s.default for k, s in schema.items() if k not in node and s.has_default}
    return {**node, **copy.deepcopy(missing)}
