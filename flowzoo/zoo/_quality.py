"""Image sample quality: a classifier per data set, its Fréchet distance and legibility.

FID (Heusel et al. 2017; :func:`flowzoo.metrics.fid`, for data sets read from files)
compares Inception-v3 features, which need pytorch-fid's weights, fetched by hand, and mean
little on 8x8 or 28x28 grey digits. For the offline digit sets flowzoo instead trains a
small CNN
(:func:`flowzoo.nets.cnn_classifier`) on the training split of each offline image data set,
once, and caches it; its test accuracy is recorded and checked. A plain classifier is
confidently wrong on images that are no digit at all (on uniform noise, 69% of the images got
one class at probability 0.9 or more), so it is trained with outlier exposure (Hendrycks,
Mazeika & Dietterich 2019): noise, pixel-shuffled digits and blends of two digits of
different classes are pushed towards the uniform class distribution. For a set of generated
images it reports

* ``fd``: the Fréchet distance between the Gaussian fits of the classifier's penultimate
  features on the samples and on the same number of held-out test images;
* ``legibility``: the fraction of samples the classifier assigns one class with probability
  at least 0.9;
* ``class_histogram``: the fraction of samples per predicted class (mode coverage);

and beside them the floor: the same three figures for held-out test images (FD against as many
training images), i.e. what a generator of perfect, unseen digits would score.

Both classifiers ship inside the package (``flowzoo/zoo/pretrained/classifiers/``, one
safetensors file and card each, checksum verified on load), so the figures of the shipped
models' cards are reproduced with the very network that measured them. Without a shipped
file, a classifier is trained on first use and cached: ``$FLOWZOO_CACHE`` (default
``~/.cache/flowzoo``) ``/classifier-<name>-v1.npz``, the parameter leaves plus a JSON record
(test accuracy, training recipe). A missing, unreadable or mismatched cache file is
(re)built from scratch (deterministic, seed 0) with a warning; it is written atomically.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import data as fzdata
from .. import metrics, nets
from .._types import Params
from ._weights import WeightsError, fill_tree, read_weights, save_weights, tree_tensors

VERSION = 1
"""Bump when the recipe below changes: older cache files are then rebuilt."""

MIN_ACCURACY = {"digits": 0.98, "mnist": 0.95}
"""The held-out accuracy a cached classifier must reach for its figures to count."""

_RECIPE = {  # per data set: training steps, batch size, random-shift augmentation (pixels)
    "digits": {"steps": 1500, "batch_size": 128, "shift": 1, "lr": 3e-3},
    "mnist": {"steps": 800, "batch_size": 128, "shift": 2, "lr": 1e-3},
}
THRESHOLD = 0.9
"""A sample is legible when the classifier gives one class at least this probability."""


class ImageClassifier(NamedTuple):
    """A trained classifier of one image data set (see :func:`image_classifier`)."""

    name: str  # the data set
    params: Params
    image_shape: tuple[int, int, int]  # (H, W, C) of the data set at native size
    levels: int
    test_accuracy: float


_NET = nets.cnn_classifier()


def cache_dir() -> Path:
    """Where classifiers are cached: ``$FLOWZOO_CACHE`` or ``~/.cache/flowzoo``."""
    return Path(os.environ.get("FLOWZOO_CACHE") or Path.home() / ".cache" / "flowzoo")


def _scaled(images: np.ndarray, levels: int) -> jax.Array:
    return jnp.asarray(images, jnp.float32) / (levels - 1)


def _shifted(key, x: jax.Array, shift: int) -> jax.Array:
    """Each image moved by a random whole-pixel offset in ``[-shift, shift]^2`` (zero fill)."""
    if shift == 0:
        return x
    h, w = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)))
    offs = jax.random.randint(key, (x.shape[0], 2), 0, 2 * shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(padded, offs)


OUTLIER_WEIGHT = 0.5
"""Weight of the outlier-exposure term (Hendrycks et al., ICLR 2019, use 0.5)."""


def _outliers(key, xb: jax.Array, yb: jax.Array) -> tuple[jax.Array, jax.Array]:
    """As many images that are no digit as the batch holds, for outlier exposure, with their
    weights: uniform noise, images with their pixels permuted, and 50/50 blends of two images
    of different classes (a blend of two images of one class may still be that digit:
    weight 0), a third each."""
    kn, kp = jax.random.split(key)
    m = xb.shape[0] // 3
    noise = jax.random.uniform(kn, (xb.shape[0] - 2 * m, *xb.shape[1:]))
    flat = xb[:m].reshape(m, -1)
    permuted = flat[:, jax.random.permutation(kp, flat.shape[1])].reshape(m, *xb.shape[1:])
    blend = 0.5 * (xb[m : 2 * m] + xb[2 * m : 3 * m])
    different = (yb[m : 2 * m] != yb[2 * m : 3 * m]).astype(jnp.float32)
    weights = jnp.concatenate([jnp.ones(noise.shape[0] + m), different])
    return jnp.concatenate([noise, permuted, blend]), weights


def _train(name: str, images: fzdata.ImageData) -> tuple[Params, float]:
    """Train the classifier of data set ``name`` (deterministic); returns params, accuracy."""
    recipe = _RECIPE[name]
    x, y = _scaled(images.train, images.levels), jnp.asarray(images.train_labels)
    opt = optax.adam(optax.cosine_decay_schedule(recipe["lr"], recipe["steps"]))
    key = jax.random.key(0)
    params = _NET.init(key, x[:2])
    state = opt.init(params)

    @jax.jit
    def step(params, state, k):
        kb, ks, ko = jax.random.split(k, 3)
        idx = jax.random.randint(kb, (recipe["batch_size"],), 0, x.shape[0])
        xb = _shifted(ks, x[idx], recipe["shift"])
        outliers, weights = _outliers(ko, xb, y[idx])

        def loss(p):
            logits, _ = _NET.apply(p, jnp.concatenate([xb, outliers]))
            inside, outside = logits[: len(xb)], logits[len(xb) :]
            ce = optax.softmax_cross_entropy_with_integer_labels(inside, y[idx]).mean()
            # outlier exposure: cross-entropy to the uniform distribution over classes
            uniform = -jnp.mean(jax.nn.log_softmax(outside), axis=-1)
            return ce + OUTLIER_WEIGHT * jnp.sum(weights * uniform) / jnp.sum(weights)

        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    for i in range(recipe["steps"]):
        params, state = step(params, state, jax.random.fold_in(key, i + 1))
    probs, _ = _classify(params, _scaled(images.test, images.levels))
    accuracy = float(np.mean(np.argmax(probs, 1) == images.test_labels))
    return params, accuracy


@jax.jit
def _apply(params, x):
    logits, feats = _NET.apply(params, x)
    return jax.nn.softmax(logits), feats


def _classify(params, x: jax.Array, chunk: int = 500) -> tuple[np.ndarray, np.ndarray]:
    out = [_apply(params, x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return np.concatenate([np.asarray(p) for p, _ in out]), np.concatenate(
        [np.asarray(f) for _, f in out]
    )


def _cache_file(name: str) -> Path:
    return cache_dir() / f"classifier-{name}-v{VERSION}.npz"


def _load(path: Path, template: Params) -> tuple[Params, dict[str, Any]]:
    """Params and record from ``path``; raises ValueError when they do not fit the template."""
    with np.load(path, allow_pickle=False) as f:
        record = json.loads(str(f["record"]))
        leaves, treedef = jax.tree.flatten(template)
        stored = [f[f"leaf{i}"] for i in range(len(leaves))]
    if record.get("version") != VERSION or any(
        a.shape != b.shape for a, b in zip(stored, leaves, strict=True)
    ):
        raise ValueError("it was written by another version of the recipe")
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in stored]), record


SHIPPED_DIR = Path(__file__).parent / "pretrained" / "classifiers"
"""The classifiers shipped in the package: ``NAME.safetensors`` and its card ``NAME.json``."""


def _read_shipped(name: str, template: Params) -> tuple[Params, dict[str, Any]] | None:
    """The shipped classifier of ``name`` (checksum and shapes checked), or ``None``."""
    card_path = SHIPPED_DIR / f"{name}.json"
    if not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    path = SHIPPED_DIR / card["file"]
    tensors, header = read_weights(path, card["sha256"])
    if header.get("version") != VERSION:
        raise WeightsError(
            f"{path} holds version {header.get('version')} of the {name} classifier recipe, "
            f"this flowzoo's is {VERSION}; reinstall flowzoo"
        )
    return fill_tree(template, tensors, "params", path), header


def export_classifier(name: str, out_dir: str | os.PathLike) -> Path:
    """Write classifier ``name`` (:func:`image_classifier`: shipped, cached or trained now)
    as ``out_dir/NAME.safetensors`` with its card ``NAME.json`` (data set, held-out
    accuracy, recipe, SHA-256); returns the card's path."""
    clf = image_classifier(name)
    out_dir = Path(out_dir)
    header = {"version": VERSION, "data": clf.name, "test_accuracy": clf.test_accuracy}
    header.update(_RECIPE[clf.name])
    weights = out_dir / f"{clf.name}.safetensors"
    sha = save_weights(weights, tree_tensors(clf.params, "params"), header)
    card = {**header, "file": weights.name, "sha256": sha, "bytes": weights.stat().st_size}
    path = out_dir / f"{clf.name}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def _save(path: Path, params: Params, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = {f"leaf{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(params))}
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, record=np.asarray(json.dumps(record)), **leaves)
    os.replace(tmp, path)


def image_classifier(name: str) -> ImageClassifier:
    """The classifier of offline image data set ``name`` (``"digits"``, ``"mnist"``): the
    shipped one, else the cached one, else one trained now.

    Trained on the training split (Adam with cosine decay, random shifts of up to
    1 / 2 pixels, outlier exposure; digits: 1,500 steps, about 17 s, 98.7% held-out accuracy;
    MNIST subset: 800 steps, about 3 minutes, 98.4%; on 2 CPU cores) and cached (see the
    module docstring). Raises ``RuntimeError`` if its held-out accuracy is below
    :data:`MIN_ACCURACY` (the figures would not mean much).
    """
    key = name.lower()
    if key not in _RECIPE:
        raise ValueError(
            f"no sample-quality classifier for data set {name!r}; choose one of {sorted(_RECIPE)}"
        )
    images = fzdata.image_dataset(key)
    template = jax.eval_shape(_NET.init, jax.random.key(0), jnp.zeros((2, *images.train.shape[1:])))
    path = _cache_file(key)
    params = record = None
    shipped = _read_shipped(key, template)
    if shipped is not None:
        params, record = shipped
    elif path.exists():
        try:
            params, record = _load(path, template)
        except Exception as err:  # any unreadable file is rebuilt, never trusted
            warnings.warn(
                f"cached classifier {path} is unusable ({err}); training it again", stacklevel=2
            )
    if params is None:
        params, accuracy = _train(key, images)
        record = {"version": VERSION, "data": key, "test_accuracy": accuracy, **_RECIPE[key]}
        _save(path, params, record)
    accuracy = float(record["test_accuracy"])
    if accuracy < MIN_ACCURACY[key]:
        raise RuntimeError(
            f"the {key} classifier reaches only {accuracy:.3f} held-out accuracy (needs "
            f"{MIN_ACCURACY[key]}); delete {path} to retrain it"
        )
    return ImageClassifier(key, params, tuple(images.train.shape[1:]), images.levels, accuracy)


def _native(clf: ImageClassifier, images: np.ndarray, what: str) -> np.ndarray:
    """Quantised images at the classifier's size (padded images are centre-cropped back)."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != clf.image_shape[-1]:
        raise ValueError(f"{what}: expected images (n, H, W, {clf.image_shape[-1]}), got {x.shape}")
    h, w = clf.image_shape[:2]
    top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
    if top < 0 or left < 0:
        raise ValueError(f"{what}: images {x.shape[1:3]} are smaller than the data set's {(h, w)}")
    x = x[:, top : top + h, left : left + w]
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: {int((~np.isfinite(x)).sum())} pixel values are not finite")
    return np.clip(np.floor(x), 0, clf.levels - 1)


def _figures(probs: np.ndarray, feats: np.ndarray, reference_feats: np.ndarray) -> dict:
    legible, hist = metrics.class_confidence(probs, THRESHOLD)
    fd = metrics.frechet_distance(feats, reference_feats)
    return {"fd": fd, "legibility": legible, "class_histogram": [round(float(h), 4) for h in hist]}


def image_quality(clf: ImageClassifier, samples: np.ndarray, *, n: int | None = None) -> dict:
    """Sample-quality figures of generated ``samples`` and the real-image floor.

    Args:
      clf: from :func:`image_classifier`.
      samples: ``(m, H, W, C)`` generated images in grey levels ``0 .. levels - 1`` (floats
        are floored and clipped, as when they are shown; padded sizes are centre-cropped).
      n: images compared on each side (default: ``min(m, held-out test images)``).

    Returns:
      ``{"n", "fd", "legibility", "class_histogram", "fd_floor", "legibility_floor",
      "class_histogram_floor", "classifier_accuracy"}``: FD of the first ``n`` samples
      against the first ``n`` held-out test images, and the floor: the same held-out images
      scored as if generated (legibility, histogram) and against the first ``n`` training
      images (FD).
    """
    images = fzdata.image_dataset(clf.name)
    x = _native(clf, samples, "samples")
    n = min(len(x), len(images.test)) if n is None else int(n)
    if not 2 <= n <= min(len(x), len(images.test)):
        raise ValueError(
            f"n={n}: need 2 <= n <= min({len(x)} samples, {len(images.test)} test images)"
        )
    test_probs, test_feats = _classify(clf.params, _scaled(images.test[:n], clf.levels))
    out = {"n": n, **_figures(*_classify(clf.params, _scaled(x[:n], clf.levels)), test_feats)}
    _, train_feats = _classify(clf.params, _scaled(images.train[:n], clf.levels))
    floor = _figures(test_probs, test_feats, train_feats)
    out.update({f"{k}_floor": v for k, v in floor.items()})
    out["classifier_accuracy"] = clf.test_accuracy
    return out
