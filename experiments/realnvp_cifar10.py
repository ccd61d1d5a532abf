"""Multi-scale RealNVP on CIFAR-10 at the published size (Dinh et al. 2017): 3.49 bits/dim.

Run:   flowzoo train realnvp_cifar10 --set data.path=PATH/cifar-10-python.tar.gz
       (default path: ``cifar-10-python.tar.gz`` in the working directory; the official
       python version, https://www.cs.toronto.edu/~kriz/cifar.html)
       ``flowzoo train realnvp_cifar10 --dry-run`` compiles one step without the data.
Data:  CIFAR-10's 50,000 training images streamed from a memory map with random horizontal
       flips (the paper's augmentation), the first 10,000 test images for bits/dim; uniform
       dequantization then the logit transform ``logit(0.05 + 0.9 y)`` (the paper's alpha).
Model: the paper's CIFAR-10 architecture (section 4.1): two scales (downscaled once), at
       each scale checkerboard couplings, a squeeze, channel couplings, then half the
       dimensions factored out; the final scale four checkerboard couplings; residual
       conditioners of 8 blocks with 64 feature maps.
       The paper normalises with batch normalisation in the conditioners and on the
       coupling outputs and uses weight normalisation; flowzoo's conditioners use none of
       them (ActNorm is available as ``model.options.actnorm``), and bound the log-scale by
       ``tanh``, the library default.
Train: Adam 1e-3, batch 64 (the paper's section 4.1); its L2 penalty of 5e-5 on the
       weight-normalisation scales becomes decoupled weight decay 5e-5 on every parameter
       (AdamW), the closest the trainer offers; 500,000 steps (640 epochs) is our choice,
       the paper gives no count.
Published: 3.49 bits/dim on the CIFAR-10 test set (Dinh et al. 2017, Table 1).
"""

from flowzoo.zoo import cifar10_data

RESULT = "not trained here (a GPU-day recipe; see docs/results.md for its cost)"


def get_config():
    return {
        "name": "realnvp_cifar10",
        "seed": 0,
        "data": cifar10_data(),
        "model": {
            "name": "realnvp_image",
            "num_scales": 2,
            "hidden": 64,
            "num_blocks": 8,
            "preprocess": "logit",
            "alpha": 0.05,
            "dequantization": "uniform",
        },
        "train": {
            "steps": 500_000,
            "batch_size": 64,
            "lr": 1e-3,
            "warmup_steps": 200,
            "final_lr_fraction": 1.0,
            "grad_clip": 100.0,
            "weight_decay": 5e-5,
            "ema_decay": 0.0,
            "steps_per_call": 1,
            "eval_every": 10_000,
            "checkpoint_every": 5_000,
            "keep_checkpoints": 2,
        },
        "plot": {"n_samples": 64, "quality_samples": 0},
    }
