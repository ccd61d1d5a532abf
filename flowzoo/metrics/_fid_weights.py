"""The FID Inception weights: locating, converting (once, with torch) and loading them.

The reference weights are pytorch-fid's published file (a torch pickle of the Inception-v3
graph TensorFlow's FID code uses, ported by pytorch-fid). :func:`convert_fid_weights`
reads it once with ``torch.load(weights_only=True)`` and writes a safetensors file, which
:func:`load_fid_weights` reads without torch and without unpickling anything.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from .._types import Array
from ..nets import fid_inception_shapes

FID_WEIGHTS_ENV = "FLOWZOO_FID_WEIGHTS"
"""Environment variable naming the converted weights file when none is passed."""

FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
"""Where pytorch-fid publishes ``pt_inception-2015-12-05-6726825d.pth`` (its
``FID_WEIGHTS_URL``)."""

FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
"""SHA-256 of the published file (95,628,359 bytes); the file name carries its first 8 hex
digits, which torch hub's ``check_hash`` compares."""

_DROPPED = ("fc.weight", "fc.bias")
"""Tensors of the published file outside the pool-3 network (the 1008-way classifier)."""


class FIDWeightsError(ValueError):
    """A FID weights file that is missing, unreadable, or not the FID Inception's weights."""


_CONVERT_HINT = "convert pytorch-fid's file with: flowzoo fid-weights convert PATH"


def fid_weights_path(explicit: str | os.PathLike | None = None) -> Path | None:
    """The converted FID weights file: ``explicit`` if given, else ``$FLOWZOO_FID_WEIGHTS``,
    else ``None`` (no FID). A named file that does not exist raises :class:`FIDWeightsError`."""
    value = explicit if explicit is not None else os.environ.get(FID_WEIGHTS_ENV) or None
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        source = "" if explicit is not None else f" (from {FID_WEIGHTS_ENV})"
        raise FIDWeightsError(f"FID weights file {path}{source} does not exist; {_CONVERT_HINT}")
    return path


def _check_names(tensors: dict[str, tuple[int, ...]], where: str) -> None:
    """One error line naming the first missing, unexpected or mis-shaped tensor."""
    want = fid_inception_shapes()
    missing = [k for k in want if k not in tensors]
    extra = [k for k in tensors if k not in want]
    wrong = [k for k in want if k in tensors and tuple(tensors[k]) != want[k]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (first: {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} unexpected (first: {extra[0]})")
    if wrong:
        k = wrong[0]
        problems.append(
            f"{len(wrong)} of the wrong shape ({k}: {tuple(tensors[k])}, not {want[k]})"
        )
    if problems:
        raise FIDWeightsError(
            f"{where} does not hold the FID Inception-v3 weights: {'; '.join(problems)}"
        )


def _read(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        head = fh.read(4)
    try:
        if head.startswith(b"PK"):  # a zip: .npz
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        from safetensors.numpy import load_file

        return load_file(path)
    except Exception as err:  # safetensors, zip and npy readers raise their own types
        raise FIDWeightsError(
            f"{path} is not a safetensors or .npz weights file ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]}); {_CONVERT_HINT}"
        ) from None


def load_fid_weights(path: str | os.PathLike) -> dict[str, Array]:
    """The parameters of :func:`flowzoo.nets.fid_inception` from a converted weights file.

    Reads safetensors (what :func:`convert_fid_weights` writes) or ``.npz`` (no pickles),
    checks every name and shape against :func:`flowzoo.nets.fid_inception_shapes` and
    returns float32 JAX arrays keyed by torch's ``state_dict`` names. A missing file, a file
    of another format and wrong names or shapes raise :class:`FIDWeightsError` (one line).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FIDWeightsError(f"FID weights file {path} does not exist; {_CONVERT_HINT}")
    arrays = _read(path)
    _check_names({k: v.shape for k, v in arrays.items()}, str(path))
    return {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}


def _torch_state_dict(pth: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ImportError(
            "converting the FID weights needs the torch package (only for this one step): "
            "pip install torch"
        ) from None
    try:
        state = torch.load(pth, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors alike
        raise FIDWeightsError(
            f"{pth} is not a torch weights file ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FIDWeightsError(f"{pth} holds a {type(state).__name__}, not a state_dict of tensors")
    return {
        k: v.detach().to(torch.float32).contiguous().numpy()
        for k, v in state.items()
        if k not in _DROPPED and not k.endswith(".num_batches_tracked")
    }


def convert_fid_weights(
    pth_path: str | os.PathLike, out_path: str | os.PathLike | None = None
) -> tuple[Path, bool]:
    """Convert pytorch-fid's Inception weights to safetensors that flowzoo reads without torch.

    The published file is ``pt_inception-2015-12-05-6726825d.pth`` (95,628,359 bytes, SHA-256
    :data:`FID_WEIGHTS_SHA256`), downloaded by hand from :data:`FID_WEIGHTS_URL`. It is read
    once with ``torch.load(path, map_location="cpu", weights_only=True)`` (no arbitrary
    unpickling; torch is needed for this step only); the classifier ``fc.*`` and the batch
    norms' ``num_batches_tracked`` are dropped, every other name and shape is checked against
    :func:`flowzoo.nets.fid_inception_shapes`, and the 470 float32 tensors are written to
    ``out_path`` (default: beside the input, suffix ``.safetensors``) through a temporary
    file and a rename.

    Returns:
      ``(out_path, published)``: the written file, and whether the input's SHA-256 is that
      of the published file (another file with the right structure converts too: a
      fine-tuned or randomly initialised network).

    Raises:
      ImportError: torch is not installed.
      FIDWeightsError: the input is missing, not a torch state_dict, or not this network.
    """
    pth = Path(pth_path).expanduser()
    if not pth.is_file():
        raise FIDWeightsError(f"{pth} does not exist (download it from {FID_WEIGHTS_URL})")
    out = Path(out_path).expanduser() if out_path is not None else pth.with_suffix(".safetensors")
    if out.resolve() == pth.resolve():
        raise FIDWeightsError(f"the output {out} would overwrite the input")
    arrays = _torch_state_dict(pth)
    _check_names({k: v.shape for k, v in arrays.items()}, str(pth))
    digest = hashlib.sha256()
    with open(pth, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    published = digest.hexdigest() == FID_WEIGHTS_SHA256
    from safetensors.numpy import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        meta = {"source": pth.name, "source_sha256": digest.hexdigest()}
        save_file(arrays, tmp, metadata=meta)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out, published
