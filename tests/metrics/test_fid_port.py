"""The JAX FID Inception against pytorch-fid's network (needs torch, torchvision, pytorch-fid).

pytorch-fid's ``fid_inception_v3()`` downloads the published weights, so the reference is
built offline the same way: torchvision's ``inception_v3(weights=None, aux_logits=False,
num_classes=1008, init_weights=False)`` with the blocks replaced by pytorch-fid's
``FIDInceptionA/C/E_1/E_2``, wrapped by pytorch-fid's own ``InceptionV3([3])`` (resize to
299x299, scaling to [-1, 1], pool-3 output). Every weight and every batch-norm statistic is
random, the state_dict goes through ``torch.save`` and :func:`convert_fid_weights`, and the
2048 features of the same images must agree to 2e-5 of their largest magnitude (float32;
measured 4e-7 (upsampled, 299x299) and 2e-6 (downsampled); counting the padding in the
average pools gives 3e-2, an antialiased resize 7e-2).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
pfid = pytest.importorskip("pytorch_fid.inception")

from flowzoo import metrics, nets  # noqa: E402

RTOL = 2e-5


def _offline_fid_inception():
    """``pytorch_fid.inception.fid_inception_v3`` without loading the published weights."""
    net = torchvision.models.inception_v3(
        weights=None, aux_logits=False, num_classes=1008, init_weights=False
    )
    net.Mixed_5b = pfid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfid.FIDInceptionE_1(1280)
    net.Mixed_7c = pfid.FIDInceptionE_2(2048)
    return net


def _randomise(net) -> None:
    """He-normal kernels, and batch norms whose scale, shift, mean and (positive) variance
    are all random, so no layer is the identity."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                w = module.weight
                w.copy_(torch.randn(w.shape, generator=gen) * (2.0 / w[0].numel()) ** 0.5)
            elif isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    """(reference InceptionV3 in eval mode, converted JAX params)."""
    mp = pytest.MonkeyPatch()
    built = []

    def offline():
        built.append(_offline_fid_inception())
        return built[-1]

    mp.setattr(pfid, "fid_inception_v3", offline)
    try:
        model = pfid.InceptionV3([3])  # resize_input=True, normalize_input=True
    finally:
        mp.undo()
    _randomise(built[0])
    model.eval()
    folder = tmp_path_factory.mktemp("fid_port")
    pth = folder / "random_inception.pth"
    torch.save(built[0].state_dict(), pth)
    out, published = metrics.convert_fid_weights(pth)
    assert out == folder / "random_inception.safetensors" and not published
    return model, metrics.load_fid_weights(out)


@pytest.mark.parametrize("size", [32, 299, 333], ids=["resized-up", "no-resize", "resized-down"])
def test_features_match_pytorch_fid(port, size):
    model, params = port
    images = np.random.default_rng(size).random((3, size, size, 3), dtype=np.float32)
    with torch.no_grad():
        (ref,) = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())
    ref = ref.reshape(3, -1).numpy()
    got = np.asarray(nets.fid_inception().apply(params, images))
    assert got.shape == ref.shape == (3, 2048)
    assert np.abs(ref).max() > 1e-2 and ref.std(axis=0).mean() > 1e-4  # not a trivial network
    err = np.abs(got - ref).max() / np.abs(ref).max()
    assert err < RTOL, f"max |jax - torch| / max |torch| = {err:.2e}"
