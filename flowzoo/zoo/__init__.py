"""Config -> model recipes, the model registry and config-driven runs (``flowzoo train``).

One module per family registers its builders here (``realnvp``, ``glow``, ``realnvp_image``,
``image_coupling``, ``ffjord``, ``cfm``, ``ncsn``, ``ebm``, ``score_sde``); a builder turns a
config's ``model`` section into a :class:`Model`: a loss and a sampler wrapped around the
model's :class:`~flowzoo.distributions.Distribution`.

Importing it also registers the flow samplers of :data:`flowzoo.flows.FLOW_SAMPLERS`
(``flow_realnvp``, ``flow_spline``, ``flow_iaf``) in :data:`flowzoo.samplers.SAMPLERS`.
"""

from ..flows import FLOW_SAMPLERS as _FLOW_SAMPLERS
from ..samplers import SAMPLERS as _SAMPLERS
from ..samplers import register_sampler as _register_sampler
from . import _cnf, _flow_matching, _flows, _score  # noqa: F401  (register the builders)
from . import _schema as schema  # the sections (TOP, TRAIN, PLOT, data_schema), Spec, Int, ...
from ._card import card_figures as card_figures
from ._card import likelihood_figures as likelihood_figures
from ._card import sample_figures as sample_figures
from ._config import ExperimentSource as ExperimentSource
from ._config import apply_overrides as apply_overrides
from ._config import available_experiments as available_experiments
from ._config import builtin_experiment as builtin_experiment
from ._config import complete_config as complete_config
from ._config import default_config as default_config
from ._config import load_experiment as load_experiment
from ._config import resolve_experiment as resolve_experiment
from ._config import schema_of as schema_of
from ._config import validate_config as validate_config
from ._dry_run import dry_run as dry_run
from ._dry_run import jaxpr_flops as jaxpr_flops
from ._flow_matching import build_guided_cfm as build_guided_cfm
from ._flow_matching import default_model_config as default_cfm_config
from ._flow_matching import image_model_config as image_cfm_config
from ._flow_matching import network as cfm_network
from ._flow_matching import path_from_config as path_from_config
from ._flow_matching import sampling_network as cfm_sampling_network
from ._images import adm_unet_keys as adm_unet_keys
from ._images import cifar10_data as cifar10_data
from ._images import ddpm_train as ddpm_train
from ._images import preprocessing as image_preprocessing
from ._pretrained import PRETRAINED_DIR as PRETRAINED_DIR
from ._pretrained import Opened as Opened
from ._pretrained import Pretrained as Pretrained
from ._pretrained import export_pretrained as export_pretrained
from ._pretrained import model_card as model_card
from ._pretrained import open_run as open_run
from ._pretrained import pretrained as pretrained
from ._pretrained import pretrained_names as pretrained_names
from ._pretrained import pretrained_parts as pretrained_parts
from ._quality import ImageClassifier as ImageClassifier
from ._quality import export_classifier as export_classifier
from ._quality import image_classifier as image_classifier
from ._quality import image_quality as image_quality
from ._registry import MODELS as MODELS
from ._registry import Guidance as Guidance
from ._registry import Model as Model
from ._registry import ModelEntry as ModelEntry
from ._registry import build_model as build_model
from ._registry import from_distribution as from_distribution
from ._registry import register_model as register_model
from ._run import IMAGE_SAMPLE_BATCH as IMAGE_SAMPLE_BATCH
from ._run import EvaluationError as EvaluationError
from ._run import Run as Run
from ._run import RunData as RunData
from ._run import RunParts as RunParts
from ._run import build_optimizer as build_optimizer
from ._run import guided_run as guided_run
from ._run import load_data as load_data
from ._run import load_run as load_run
from ._run import load_run_parts as load_run_parts
from ._run import prepare_data as prepare_data
from ._run import sample_batch as sample_batch
from ._run import train_and_evaluate as train_and_evaluate
from ._schema import QUALITY_SAMPLES as QUALITY_SAMPLES
from ._schema import applicable_config as applicable_config
from ._score import score_network as score_sde_network
from ._spec import ConfigError as ConfigError
from ._spec import SectionCheck as SectionCheck
from ._spec import Spec as Spec
from ._weights import WeightsError as WeightsError
from ._weights import read_weights as read_weights
from ._weights import save_weights as save_weights
from ._weights import sha256_of as sha256_of

for _name, _spec in _FLOW_SAMPLERS.items():  # the flows layer does not register itself
    if _name not in _SAMPLERS:
        _register_sampler(_name, _spec)
