"""RealNVP on the 2-D checkerboard (FFJORD's toy set); sharp edges make it hard for flows.

Run: flowzoo train checkerboard_realnvp
"""

from flowzoo.zoo import default_config

RESULT = "test NLL 1.986 nats (standardised), energy distance 0.0009, 4,000 steps"


def get_config():
    config = default_config()
    config["name"] = "checkerboard_realnvp"
    config["data"]["name"] = "checkerboard"
    config["model"]["num_layers"] = 16
    config["train"]["steps"] = 4000
    return config
