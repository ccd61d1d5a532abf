"""RealNVP on the 2-D checkerboard (FFJORD's toy set); sharp edges make it hard for flows.

Run: flowzoo train checkerboard_realnvp
"""

from flowzoo.zoo import default_config

RESULT = "not yet measured"


def get_config():
    config = default_config()
    config["name"] = "checkerboard_realnvp"
    config["data"]["name"] = "checkerboard"
    config["model"]["num_layers"] = 16
    config["train"]["steps"] = 4000
    return config
