"""RealNVP on the eight-Gaussians ring (FFJORD's toy set).

Run: flowzoo train eight_gaussians_realnvp
"""

from flowzoo.zoo import default_config

RESULT = "not yet measured"


def get_config():
    config = default_config()
    config["name"] = "eight_gaussians_realnvp"
    config["data"]["name"] = "eight_gaussians"
    return config
