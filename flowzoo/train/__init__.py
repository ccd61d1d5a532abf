"""Training: ``TrainState``, compiled train steps (jit, sharded, pmap), the ``fit`` loop, and
the persistent-CD step of energy models. Config-driven runs are in :mod:`flowzoo.zoo`."""

from ._distributed import Distributed as Distributed
from ._distributed import DistributedError as DistributedError
from ._distributed import check_distributed as check_distributed
from ._distributed import initialize_distributed as initialize_distributed
from ._distributed import is_primary as is_primary
from ._fit import FitResult as FitResult
from ._fit import MetricsWriter as MetricsWriter
from ._fit import NonFiniteError as NonFiniteError
from ._fit import TrainingInterrupted as TrainingInterrupted
from ._fit import fit as fit
from ._fit import json_safe as json_safe
from ._pcd import PCD as PCD
from ._pcd import PCDState as PCDState
from ._pcd import persistent_cd as persistent_cd
from ._step import DATA_AXIS as DATA_AXIS
from ._step import EmaDecay as EmaDecay
from ._step import LossFn as LossFn
from ._step import TrainState as TrainState
from ._step import apply_update as apply_update
from ._step import batch_sharding as batch_sharding
from ._step import cast_floating as cast_floating
from ._step import check_batch_divides as check_batch_divides
from ._step import data_mesh as data_mesh
from ._step import ema_warmup as ema_warmup
from ._step import init_train_state as init_train_state
from ._step import make_multi_step as make_multi_step
from ._step import make_pmap_train_step as make_pmap_train_step
from ._step import make_sharded_multi_step as make_sharded_multi_step
from ._step import make_train_step as make_train_step
from ._step import replicate as replicate
from ._step import replicated as replicated
from ._step import shard_batch as shard_batch
from ._step import unreplicate as unreplicate
