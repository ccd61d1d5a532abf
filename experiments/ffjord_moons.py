"""FFJORD (Grathwohl et al. 2019) on two moons: a CNF trained by maximum likelihood.

Run:   flowzoo train ffjord_moons
Data:  two moons, noise 0.05, 20,000 train / 5,000 held-out points, standardised.
Model: CNF with a time-conditioned MLP vector field (3x64 tanh, 32-d sinusoidal time
       embedding), base N(0, I) at t=0, data at t=1. Training loss: Hutchinson (Rademacher)
       estimate of the NLL through an adaptive Tsit5 solve (rtol = atol = 1e-3);
       evaluation: exact divergence, adaptive Tsit5 (rtol = atol = 1e-5).
       Do not train through a coarse fixed-step solve: with RK4 at 8 steps the training NLL
       falls to -8.6 nats by step 1000 (the network exploits the discretisation error of the
       log-det integral; the time embedding scales t by 1000, so the field can oscillate in
       t faster than the steps resolve).
       Adam 2e-3, 100 warm-up steps, cosine decay, clip 1.0, batch 256, 1000 steps.

The command above reproduces RESULT and writes runs/ffjord_moons/{metrics.jsonl,
samples.png,density.png}. The training solve takes about 43 steps (260 NFE) per batch. The
training NLL is still falling at step 1,000, so more steps would lower it further; the data
entropy, about 1.09 nats, bounds every model from below.
"""

from flowzoo.zoo import default_config

RESULT = "test NLL 1.186 nats (standardised; 0.346 raw), energy distance 7.5e-6, 1,000 steps"


def get_config():
    config = default_config()
    config["name"] = "ffjord_moons"
    config["model"] = {
        "name": "ffjord",
        "hidden": [64, 64, 64],
        "embed_dim": 32,
        "activation": "tanh",
        "divergence": "hutchinson",
        "probe": "rademacher",
        "solver": "tsit5",
        "num_steps": 0,
        "rtol": 1e-3,
        "atol": 1e-3,
    }
    config["train"]["steps"] = 1000
    config["train"]["lr"] = 2e-3
    config["train"]["eval_every"] = 500
    config["train"]["checkpoint_every"] = 500
    config["plot"]["grid"] = 100
    return config
