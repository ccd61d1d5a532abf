"""Weight files: parameter pytrees in safetensors, with a JSON header and a SHA-256.

A weight file is a safetensors file (nothing in it is unpickled or executed): one tensor per
parameter leaf, named by its path in the pytree under a prefix (``params/coupling/0/kernel``),
and one metadata entry, ``flowzoo``, a JSON object saying what the tensors are (the run's
config, event shape, standardiser, params format). Reading one checks, in this order, that
the file's SHA-256 is the expected one, that it is a safetensors file of this kind, and that
its tensors are exactly the leaves of the model they are loaded into, with the same shapes;
each failure is a :class:`WeightsError` whose message names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ._spec import ConfigError

METADATA_KEY = "flowzoo"
"""The safetensors metadata entry that holds flowzoo's JSON header."""


class WeightsError(ConfigError):
    """A weight file that cannot be used: missing, damaged (checksum), not a flowzoo weight
    file, written for another params format, or holding tensors the model does not have."""


def sha256_of(path: str | os.PathLike) -> str:
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _key_name(k: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def leaf_names(tree: Any, prefix: str) -> list[str]:
    """``prefix/a/b/...`` for every leaf of ``tree``, in ``jax.tree.leaves`` order."""
    paths = jax.tree_util.tree_flatten_with_path(tree)[0]
    return ["/".join([prefix, *(_key_name(k) for k in path)]) for path, _ in paths]


def tree_tensors(tree: Any, prefix: str, dtype: Any = None) -> dict[str, np.ndarray]:
    """The leaves of ``tree`` as named NumPy arrays (cast to ``dtype`` when given)."""
    leaves = jax.tree.leaves(tree)
    out = {}
    for name, leaf in zip(leaf_names(tree, prefix), leaves, strict=True):
        a = np.asarray(leaf)
        out[name] = a.astype(dtype) if dtype is not None and a.dtype.kind == "f" else a
    return out


def save_weights(
    path: str | os.PathLike, tensors: dict[str, np.ndarray], header: dict[str, Any]
) -> str:
    """Write ``tensors`` and the JSON ``header`` to ``path`` atomically; returns its SHA-256."""
    from safetensors.numpy import save

    path = Path(path)
    data = save(
        {k: np.ascontiguousarray(v) for k, v in tensors.items()},
        metadata={METADATA_KEY: json.dumps(header, sort_keys=True)},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def read_weights(
    path: str | os.PathLike, sha256: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The tensors and JSON header of the weight file at ``path``.

    Raises:
      WeightsError: the file is missing, its SHA-256 is not ``sha256`` (when given), or it is
        not a safetensors file with a flowzoo header.
    """
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WeightsError(f"weight file {path} cannot be read: {err.strerror or err}") from err
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise WeightsError(
                f"weight file {path} fails its checksum (SHA-256 {found[:16]}..., its model "
                f"card says {sha256[:16]}...): the file is damaged or was changed; reinstall "
                "flowzoo (or export the run again)"
            )
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        meta = json.loads(header["__metadata__"][METADATA_KEY])
        tensors = load(data)
    except Exception as err:  # struct, json, KeyError and safetensors' own errors
        raise WeightsError(
            f"{path} is not a flowzoo weight file (a safetensors file with a "
            f"{METADATA_KEY!r} header): {type(err).__name__}: {err}"
        ) from err
    return tensors, meta


def fill_tree(template: Any, tensors: dict[str, np.ndarray], prefix: str, where: Any) -> Any:
    """``template``'s pytree with each leaf read from ``tensors[prefix/...]``.

    ``template`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves; each tensor is cast to
    its leaf's dtype. Raises :class:`WeightsError` (naming ``where``) for a missing tensor, a
    shape that differs from the model's, or tensors under ``prefix`` the model does not have.
    """
    leaves, treedef = jax.tree.flatten(template)
    names = leaf_names(template, prefix)
    out = []
    for name, leaf in zip(names, leaves, strict=True):
        if name not in tensors:
            raise WeightsError(
                f"{where} has no tensor {name!r}, which the model needs: the file was written "
                "for another model or config"
            )
        a = tensors[name]
        if tuple(a.shape) != tuple(leaf.shape):
            raise WeightsError(
                f"{where}: tensor {name!r} has shape {tuple(a.shape)}, the model's is "
                f"{tuple(leaf.shape)}: the file was written for another model or config"
            )
        out.append(jax.numpy.asarray(a, dtype=leaf.dtype))
    extra = sorted(k for k in tensors if k.startswith(prefix + "/") and k not in set(names))
    if extra:
        raise WeightsError(
            f"{where} holds {len(extra)} tensor(s) the model does not have, e.g. {extra[0]!r}: "
            "the file was written for another model or config"
        )
    return jax.tree.unflatten(treedef, out)
