"""Metrics, one copy of each: two-sample distances, MCMC diagnostics and bits/dim.

Two-sample distances (:func:`mmd`, :func:`energy_distance`, :func:`sliced_wasserstein`)
flatten trailing axes, so images ``(n, H, W, C)`` are compared as vectors; units follow the
data. :func:`kernel_stein_discrepancy` and :func:`effective_sample_size` diagnose Markov
chains; :func:`flowzoo.metrics.bits_per_dim` converts a log-density in nats.
:func:`frechet_distance` and :func:`class_confidence` score image samples through a
classifier's features and probabilities (see :func:`flowzoo.zoo.image_quality`).
:func:`fid` is the Fréchet Inception Distance with the reference Inception-v3
(:func:`fid_image_statistics`, :func:`load_fid_weights`, :func:`convert_fid_weights`).
"""

from ._bpd import bits_per_dim as bits_per_dim
from ._fid import Statistics as Statistics
from ._fid import fid as fid
from ._fid import fid_features as fid_features
from ._fid import fid_image_statistics as fid_image_statistics
from ._fid import fid_statistics as fid_statistics
from ._fid_weights import FID_WEIGHTS_ENV as FID_WEIGHTS_ENV
from ._fid_weights import FID_WEIGHTS_SHA256 as FID_WEIGHTS_SHA256
from ._fid_weights import FID_WEIGHTS_URL as FID_WEIGHTS_URL
from ._fid_weights import FIDWeightsError as FIDWeightsError
from ._fid_weights import convert_fid_weights as convert_fid_weights
from ._fid_weights import fid_weights_path as fid_weights_path
from ._fid_weights import load_fid_weights as load_fid_weights
from ._frechet import class_confidence as class_confidence
from ._frechet import frechet_distance as frechet_distance
from ._frechet import gaussian_frechet_distance as gaussian_frechet_distance
from ._mcmc import effective_sample_size as effective_sample_size
from ._mcmc import kernel_stein_discrepancy as kernel_stein_discrepancy
from ._samples import energy_distance as energy_distance
from ._samples import mmd as mmd
from ._samples import sliced_wasserstein as sliced_wasserstein
