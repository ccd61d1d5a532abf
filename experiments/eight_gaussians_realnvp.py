"""RealNVP on the eight-Gaussians ring (FFJORD's toy set).

Run: flowzoo train eight_gaussians_realnvp
"""

from flowzoo.zoo import default_config

RESULT = "test NLL 1.629 nats (standardised), energy distance 0.0026, 2,000 steps"


def get_config():
    config = default_config()
    config["name"] = "eight_gaussians_realnvp"
    config["data"]["name"] = "eight_gaussians"
    return config
