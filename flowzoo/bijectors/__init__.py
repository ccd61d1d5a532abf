"""Bijectors: invertible maps with log-determinants, as ``Bijector(init, forward, inverse)``."""

from ._base import Bijector as Bijector
from ._base import chain as chain
from ._base import invert as invert
from ._base import stack as stack
from ._base import sum_except_batch as sum_except_batch
from ._coupling import ConditionerFactory as ConditionerFactory
from ._coupling import additive_coupling as additive_coupling
from ._coupling import affine_coupling as affine_coupling
from ._coupling import mlp_conditioner as mlp_conditioner
from ._elementwise import affine as affine
from ._elementwise import fixed_affine as fixed_affine
from ._masks import alternating_mask as alternating_mask
from ._masks import channel_mask as channel_mask
from ._masks import checkerboard_mask as checkerboard_mask
from ._masks import half_mask as half_mask
from ._permute import permute as permute
from ._permute import random_permutation as random_permutation
from ._permute import reverse as reverse
