"""The figures of a model card: what a trained model reproduces, measured the same way for
a run directory and for shipped weights.

* Likelihood (models with a density): on the run's held-out split (``data.n_test`` of it),
  the mean negative log-likelihood per example with its standard error (std over examples /
  sqrt(n)) and the per-example std; vector data in the run's standardised units (the summary's
  ``test_nll``) and raw units; images as bits per dimension (the dequantisation bound,
  :func:`flowzoo.metrics.bits_per_dim`).
* Samples, over ``draws`` sampling seeds: vector data the energy distance to the held-out
  split (``min(n, 2000)`` of each, standardised units, :func:`flowzoo.metrics.energy_distance`);
  images of the offline digit sets the classifier's FD and legibility on ``n`` samples
  (:func:`flowzoo.zoo.image_quality`, default 1,000; vector data: 2,000, as the run
  summaries' energy distance). Each figure is reported per draw with
  its mean and spread (min, max).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from .. import data as fzdata
from .. import metrics
from ._quality import image_classifier, image_quality
from ._run import Run, _image_levels, load_data


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "draws": [float(v) for v in values],
        "mean": float(np.mean(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
    }


def likelihood_figures(run: Run, test: np.ndarray) -> dict[str, Any]:
    """Mean NLL (vectors) or bits/dim (images) of raw-unit ``test`` with its standard error."""
    lp = np.asarray(run.log_prob(test), np.float64)
    n = len(lp)
    if _image_levels(run.config) is not None:
        dims = math.prod(test.shape[1:])
        bpd = -lp / (dims * math.log(2))
        return {
            "n_test": n,
            "test_bpd": float(bpd.mean()),
            "test_bpd_se": float(bpd.std(ddof=1) / math.sqrt(n)),
            "test_bpd_sd": float(bpd.std(ddof=1)),
        }
    log_det = float(fzdata.standardizer_log_det(run.standardizer))
    nll = -lp + log_det  # standardised units, as the run's summary reports test_nll
    return {
        "n_test": n,
        "test_nll": float(nll.mean()),
        "test_nll_se": float(nll.std(ddof=1) / math.sqrt(n)),
        "test_nll_sd": float(nll.std(ddof=1)),
        "test_nll_raw": float((-lp).mean()),
    }


def sample_figures(run: Run, test: np.ndarray, draws=(0, 1, 2), n: int | None = None) -> dict:
    """Sample figures over the sampling seeds ``draws`` (see the module docstring)."""
    name = str(run.config["data"]["name"]).lower()
    if _image_levels(run.config) is not None:
        n = 1000 if n is None else n
        if name not in fzdata.IMAGE_LEVELS:
            return {}
        clf = image_classifier(name)
        found = [image_quality(clf, run.sample(jax.random.key(d), n)) for d in draws]
        return {
            "n_samples": n,
            "fd": _spread([f["fd"] for f in found]),
            "legibility": _spread([f["legibility"] for f in found]),
            "fd_floor": float(found[0]["fd_floor"]),
            "legibility_floor": float(found[0]["legibility_floor"]),
        }
    m = min(2000 if n is None else n, len(test), 2000)
    y = fzdata.standardize(run.standardizer, test[:m])
    eds = []
    for d in draws:
        x = fzdata.standardize(run.standardizer, run.sample(jax.random.key(d), m))
        eds.append(float(metrics.energy_distance(x, y)))
    return {"n_samples": m, "energy_distance": _spread(eds)}


def card_figures(run: Run, draws=(0, 1, 2), n: int | None = None) -> dict[str, Any]:
    """Every figure of a model card for ``run`` (see the module docstring)."""
    _, test = load_data(run.config)
    test = np.asarray(test)
    out: dict[str, Any] = {}
    if run.model.distribution is not None:
        out.update(likelihood_figures(run, test))
    out.update(sample_figures(run, test, draws, n))
    return out
