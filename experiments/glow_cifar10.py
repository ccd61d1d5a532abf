"""Glow on CIFAR-10 at the published size (Kingma & Dhariwal 2018): 3.35 bits/dim.

Run:   flowzoo train glow_cifar10 --set data.path=PATH/cifar-10-python.tar.gz
       (default path: ``cifar-10-python.tar.gz`` in the working directory; the official
       python version, https://www.cs.toronto.edu/~kriz/cifar.html, 170,498,071 bytes)
       ``flowzoo train glow_cifar10 --dry-run`` compiles one step and prints the parameter
       count, FLOPs and memory without reading the data.
Data:  CIFAR-10's 50,000 training images (``flowzoo.data.dataset("cifar10", path)``,
       streamed from a memory map, random horizontal flips), the first 10,000 test images for
       bits/dim; additive uniform dequantization ``y = (x + u) / 256`` and Glow's shift to
       ``[-0.5, 0.5)``.
Model: the paper's CIFAR-10 model: 3 levels (32x32x3 -> 16x16x12 -> 8x8x24 -> 4x4x48, half of
       the channels factored out after each of the first two) x 32 steps (ActNorm, LU
       1x1 convolution, affine coupling with Glow's sigmoid(h + 2) scale), 512-channel
       conditioners, learned (conditional) priors at every split. Conditioner: the paper's
       ``conv3x3 -> relu -> conv1x1 -> relu -> zero-init conv3x3``
       (``model.options.residual = false``), without the ActNorm that Glow's code puts after
       its hidden convolutions.
Train: as the paper's code (openai/glow README, "CIFAR-10 Quantitative result": 8 processes x
       ``n_batch_train`` 64 = batch 512, Adam 1e-3, ``--flow_permutation 2 --flow_coupling 1
       --learntop --n_bits_x 8``) with linear warm-up; the paper does not fix a step count
       (its code trains until stopped), ours is 200,000 steps (2,048 epochs), constant rate
       after the warm-up, gradient clipping at 50 (a guard against the rare spike, not a
       regulariser).
Published: 3.35 bits/dim on the CIFAR-10 test set (Kingma & Dhariwal 2018, Table 2).
Cost: ``flowzoo train glow_cifar10 --dry-run`` gives the step's FLOPs; the accelerator
       benchmark (``benchmarks/accelerator.py``) its time on a GPU, and docs/results.md the
       GPU-hours to reach the paper's number.
"""

from flowzoo.zoo import cifar10_data

RESULT = "not trained here (a multi-GPU-day recipe; see docs/results.md for its cost)"


def get_config():
    return {
        "name": "glow_cifar10",
        "seed": 0,
        "data": cifar10_data(),
        "model": {
            "name": "glow",
            "levels": 3,
            "depth": 32,
            "hidden": 512,
            "options": {"scale": "sigmoid", "residual": False},
            "preprocess": "shift",
            "dequantization": "uniform",
        },
        "train": {
            "steps": 200_000,
            "batch_size": 512,
            "lr": 1e-3,
            "warmup_steps": 1_000,
            "final_lr_fraction": 1.0,
            "grad_clip": 50.0,
            "ema_decay": 0.0,
            "steps_per_call": 1,
            "eval_every": 10_000,
            "checkpoint_every": 5_000,
            "keep_checkpoints": 2,
        },
        "plot": {"n_samples": 64, "temperature": 0.7, "quality_samples": 0},
    }
