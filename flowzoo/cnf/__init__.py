"""Continuous normalizing flows: a base density pushed through an ODE, as a ``Distribution``.

The likelihood is :func:`flowzoo.integrate.ode_log_prob` (exact or Hutchinson divergence);
flow-matching models and the probability-flow ODE of score models are CNFs built by
:func:`cnf`. Residual flows (i-ResNet blocks) are bijectors: :mod:`flowzoo.bijectors`.
"""

from ._cnf import cnf as cnf
