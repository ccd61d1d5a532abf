"""Neural networks (the only place flax.linen is used), exposed as ``Network(init, apply)``."""

from ._adm_unet import adm_unet as adm_unet
from ._adm_unet import adm_unet_params_from_torch as adm_unet_params_from_torch
from ._classifier import cnn_classifier as cnn_classifier
from ._guided import guided as guided
from ._inception import FID_FEATURES as FID_FEATURES
from ._inception import fid_inception as fid_inception
from ._inception import fid_inception_shapes as fid_inception_shapes
from ._made import made as made
from ._made import made_masks as made_masks
from ._mlp import ACTIVATIONS as ACTIVATIONS
from ._mlp import INITS as INITS
from ._mlp import Network as Network
from ._mlp import activation as activation
from ._mlp import mlp as mlp
from ._remat import REMAT_POLICIES as REMAT_POLICIES
from ._remat import checkpointed as checkpointed
from ._remat import remat_policy as remat_policy
from ._resnet import conv_tap_grad as conv_tap_grad
from ._resnet import resnet as resnet
from ._time import sinusoidal_embedding as sinusoidal_embedding
from ._time import time_mlp as time_mlp
from ._unet import Im2ColConv as Im2ColConv
from ._unet import unet as unet
