"""A one-sided stochastic interpolant (Albergo, Boffi & Vanden-Eijnden 2023) on two moons.

Run: flowzoo train si_moons

As ``fm_moons`` (3x256 SiLU time MLP, 4,000 Adam steps, batch 256, independent pairs), but
``x_t = cos(pi t/2) x0 + sin(pi t/2) x1 + sqrt(t(1-t)) z`` (trigonometric interpolant with
``gamma_t = sqrt(t (1 - t))``, their eq. 2.4 with ``a = 1``): the network learns the drift
``b = E[dx_t/dt | x_t]``, whose ODE transports N(0, I) to the data. Times in
``[1e-3, 1 - 1e-3]``. For the denoiser / score of the same interpolant train
``cfm_loss(..., target="noise")`` (see the flow-matching API).
"""

from flowzoo.zoo import builtin_experiment

_fm_config = builtin_experiment("fm_moons").get_config

RESULT = "test NLL 1.256 nats (standardised), energy distance 0.0005, 4,000 steps"


def get_config() -> dict:
    config = _fm_config("independent", name="si_moons")
    config["model"].update(
        path="stochastic_interpolant",
        noise_scale=1.0,
        base="trig",
        time_range=[1e-3, 1.0 - 1e-3],
    )
    return config
