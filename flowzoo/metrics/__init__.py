"""Metrics, one copy of each: two-sample distances, MCMC diagnostics and bits/dim.

Two-sample distances (:func:`mmd`, :func:`energy_distance`, :func:`sliced_wasserstein`)
flatten trailing axes, so images ``(n, H, W, C)`` are compared as vectors; units follow the
data. :func:`kernel_stein_discrepancy` and :func:`effective_sample_size` diagnose Markov
chains; :func:`flowzoo.metrics.bits_per_dim` converts a log-density in nats.
:func:`frechet_distance` and :func:`class_confidence` score image samples through a
classifier's features and probabilities (see :func:`flowzoo.zoo.image_quality`).
"""

from ._bpd import bits_per_dim as bits_per_dim
from ._frechet import class_confidence as class_confidence
from ._frechet import frechet_distance as frechet_distance
from ._frechet import gaussian_frechet_distance as gaussian_frechet_distance
from ._mcmc import effective_sample_size as effective_sample_size
from ._mcmc import kernel_stein_discrepancy as kernel_stein_discrepancy
from ._samples import energy_distance as energy_distance
from ._samples import mmd as mmd
from ._samples import sliced_wasserstein as sliced_wasserstein
