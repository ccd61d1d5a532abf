"""Data: 2-D toy targets, array loading/validation, standardising, batches, image sets
(including CIFAR-10/100 and downsampled ImageNet read from the published files) and
dequantization."""

from ._arrays import BatchFn as BatchFn
from ._arrays import DataError as DataError
from ._arrays import Standardizer as Standardizer
from ._arrays import array_batches as array_batches
from ._arrays import check_batch as check_batch
from ._arrays import fit_standardizer as fit_standardizer
from ._arrays import load_array as load_array
from ._arrays import sampler_batches as sampler_batches
from ._arrays import standardize as standardize
from ._arrays import standardizer_log_det as standardizer_log_det
from ._arrays import unstandardize as unstandardize
from ._baseline import gaussian_bits_per_dim as gaussian_bits_per_dim
from ._cache import cache_dir as cache_dir
from ._cifar import cifar10 as cifar10
from ._cifar import cifar100 as cifar100
from ._cifar import imagenet_npz as imagenet_npz
from ._dequant import logit_transform as logit_transform
from ._dequant import quantize as quantize
from ._dequant import scale_transform as scale_transform
from ._dequant import shift_transform as shift_transform
from ._dequant import uniform_dequantize as uniform_dequantize
from ._images import IMAGE_LEVELS as IMAGE_LEVELS
from ._images import ImageData as ImageData
from ._images import check_images as check_images
from ._images import image_dataset as image_dataset
from ._images import pad_images as pad_images
from ._images import split_order as split_order
from ._png import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from ._png import TarIndex as TarIndex
from ._png import decode_image as decode_image
from ._png import read_tar_member as read_tar_member
from ._png import tar_image_index as tar_image_index
from ._shuffle import keyed_permutation as keyed_permutation
from ._toy import TOY_TARGETS as TOY_TARGETS
from ._toy import checkerboard as checkerboard
from ._toy import circles as circles
from ._toy import eight_gaussians as eight_gaussians
from ._toy import pinwheel as pinwheel
from ._toy import rings as rings
from ._toy import swiss_roll as swiss_roll
from ._toy import toy as toy
from ._toy import two_moons as two_moons
from ._toy import two_spirals as two_spirals
