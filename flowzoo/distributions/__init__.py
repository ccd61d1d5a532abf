"""The ``Distribution`` protocol and Gaussian base distributions."""

from ._base import Distribution as Distribution
from ._base import as_real as as_real
from ._base import check_context as check_context
from ._base import check_count as check_count
from ._base import check_event as check_event
from ._base import check_key as check_key
from ._base import log_prob_estimate as log_prob_estimate
from ._base import params_checker as params_checker
from ._normal import diagonal_normal as diagonal_normal
from ._normal import isotropic_normal as isotropic_normal
from ._normal import isotropic_normal_log_prob as isotropic_normal_log_prob
from ._normal import standard_normal as standard_normal
from ._normal import standard_normal_log_prob as standard_normal_log_prob
