"""Base distributions implementing the ``Distribution`` protocol."""

from ._base import Distribution as Distribution
from ._normal import diagonal_normal as diagonal_normal
from ._normal import standard_normal as standard_normal
