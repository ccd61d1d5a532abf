"""A VP-SDE score model on CIFAR-10 at DDPM's published size, with torchcfm's UNet.

Run:   flowzoo train sde_cifar10 --set data.path=PATH/cifar-10-python.tar.gz
       (default path: ``cifar-10-python.tar.gz`` in the working directory)
       ``flowzoo train sde_cifar10 --dry-run`` compiles one step without the data.
Data:  CIFAR-10's 50,000 training images with random horizontal flips, uniformly
       dequantized and scaled to [-1, 1] (``preprocess: scale``).
Model: the VP SDE with beta linear from 0.1 to 20 over t in [0, 1] (Song et al. 2021, the
       continuous limit of DDPM's 1,000 betas from 1e-4 to 0.02); t=0 data, t=1 noise
       (the diffusion convention). Score network: the same UNet as ``fm_cifar10``
       (torchcfm's CIFAR-10 UNet, ``model.net = adm_unet``, 35,746,307 parameters, dropout
       0.1), which is DDPM's CIFAR-10 UNet up to its attention heads and widths (DDPM: 35.7M
       parameters, channel multipliers 1, 2, 2, 2, attention at 16x16, one head).
Train: denoising score matching, DDPM's optimiser settings (Ho et al. 2020, appendix B):
       Adam 2e-4 with 5,000 linear warm-up steps then constant, batch 128, gradient clip 1,
       EMA 0.9999, 800,000 steps.
Sample: the reverse SDE by Euler-Maruyama with 1,000 steps and no corrector (the analogue of
       DDPM's 1,000-step ancestral sampler). The registry's fast solvers (DDIM,
       DPM-Solver++, EDM Heun: ``flowzoo bench samplers --runs sde_cifar10``) sample the same
       run with 10 to 100 steps.
Likelihood: the probability-flow ODE with Hutchinson's estimator (1 probe), adaptive Tsit5
       at 1e-5 on the first 1,000 test images, once at the end.
Published: DDPM FID 3.17 with 1,000-step ancestral sampling (Ho et al. 2020, Table 1, 50,000
       samples against the training set); DDIM at 10 / 20 / 50 / 100 steps: FID 13.36 /
       6.84 / 4.67 / 4.16 (Song et al. 2021, "Denoising Diffusion Implicit Models", Table 1,
       eta = 0).
"""

from flowzoo.zoo import adm_unet_keys, cifar10_data, ddpm_train, default_config

RESULT = "not trained here (800k steps at batch 128; see docs/results.md for its cost)"


def get_config() -> dict:
    config = default_config()
    config["name"] = "sde_cifar10"
    config["data"] = cifar10_data(n_test=1000)
    config["model"] = {
        "name": "score_sde",
        "sde": "vp",
        "sde_kwargs": {"beta_min": 0.1, "beta_max": 20.0},
        **adm_unet_keys(),  # torchcfm's CIFAR-10 UNet
        "preprocess": "scale",
        "train_eps": 1e-5,
        "sample_steps": 1000,
        "num_corrector": 0,
        "divergence": "hutchinson",
        "num_probes": 1,
        "probe_seed": 0,
        "log_prob_eps": 1e-5,
        "log_prob_solver": "tsit5",
        "log_prob_steps": 0,
        "rtol": 1e-5,
        "atol": 1e-5,
        "log_prob_chunk": 100,
    }
    config["train"] = ddpm_train(800_000)
    config["plot"].update(n_samples=64, quality_samples=0)
    return config
