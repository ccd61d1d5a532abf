"""Training: ``TrainState``, compiled train steps, the ``fit`` loop, and experiment runs."""

from ._config import ConfigError as ConfigError
from ._config import apply_overrides as apply_overrides
from ._config import available_experiments as available_experiments
from ._config import default_config as default_config
from ._config import load_experiment as load_experiment
from ._config import validate_config as validate_config
from ._fit import FitResult as FitResult
from ._fit import MetricsWriter as MetricsWriter
from ._fit import NonFiniteError as NonFiniteError
from ._fit import fit as fit
from ._registry import MODELS as MODELS
from ._registry import Trainable as Trainable
from ._registry import build_model as build_model
from ._registry import from_distribution as from_distribution
from ._registry import register_model as register_model
from ._run import Run as Run
from ._run import build_optimizer as build_optimizer
from ._run import load_run as load_run
from ._run import train_and_evaluate as train_and_evaluate
from ._step import LossFn as LossFn
from ._step import TrainState as TrainState
from ._step import apply_update as apply_update
from ._step import init_train_state as init_train_state
from ._step import make_multi_step as make_multi_step
from ._step import make_train_step as make_train_step
