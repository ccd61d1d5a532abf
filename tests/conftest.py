"""Shared pytest configuration: strict rank promotion and a fixed PRNG key fixture."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    """A fixed PRNG key; tests derive sub-keys from it with ``jax.random.split``/``fold_in``."""
    return jax.random.key(0)
