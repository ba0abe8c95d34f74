"""DualDiscriminator on a tiny configuration (eg3d.md §3.18)."""

import copy

import pytest
import torch

from nerfsculpt.camera import canonical_camera
from nerfsculpt.generator.config import tiny_discriminator_config
from nerfsculpt.generator.discriminator import DualDiscriminator, MinibatchStdLayer


def test_minibatch_std_known_answer():
    x = torch.zeros(4, 2, 1, 1)
    x[:, 0, 0, 0] = torch.tensor([1.0, 3.0, 5.0, 7.0])  # group of 4, one group
    out = MinibatchStdLayer(group_size=4)(x)
    assert out.shape == (4, 3, 1, 1)
    std_c0 = torch.tensor([1.0, 3.0, 5.0, 7.0]).var(unbiased=False).add(1e-8).sqrt()
    std_c1 = torch.tensor(1e-8).sqrt()
    torch.testing.assert_close(out[:, 2, 0, 0], ((std_c0 + std_c1) / 2).expand(4))


def test_minibatch_std_groups_are_strided():
    # EG3D reshapes [G, n, ...]: sample i belongs to group i % n
    x = torch.tensor([0.0, 10.0, 2.0, 30.0]).reshape(4, 1, 1, 1)
    out = MinibatchStdLayer(group_size=2)(x)[:, 1, 0, 0]
    torch.testing.assert_close(out, torch.tensor([1.0, 10.0, 1.0, 10.0]), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def D():
    torch.manual_seed(0)
    return DualDiscriminator(tiny_discriminator_config()).eval()


def test_logits_shape_and_conditioning_matters(D):
    torch.manual_seed(1)
    img = {"image": torch.randn(4, 3, 64, 64), "image_raw": torch.randn(4, 3, 16, 16)}
    c = canonical_camera().repeat(4, 1)
    logits = D(img, c)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    c2 = c.clone()
    c2[:, 3] += 0.5
    assert not torch.allclose(D(img, c2), logits)


def test_raw_image_is_resized_with_antialiased_bilinear(D):
    torch.manual_seed(2)
    img = {"image": torch.randn(2, 3, 64, 64), "image_raw": torch.randn(2, 3, 16, 16)}
    c = canonical_camera().repeat(2, 1)
    up = torch.nn.functional.interpolate(img["image_raw"], size=(64, 64), mode="bilinear", align_corners=False,
                                         antialias=True)
    torch.testing.assert_close(D({"image": img["image"], "image_raw": up}, c), D(img, c))


def test_r1_style_double_backward_works(D):
    D = copy.deepcopy(D)  # backward() leaves gradients: keep the shared D untouched
    img = {"image": torch.randn(2, 3, 64, 64, requires_grad=True),
           "image_raw": torch.randn(2, 3, 16, 16, requires_grad=True)}
    logits = D(img, canonical_camera().repeat(2, 1))
    grads = torch.autograd.grad(logits.sum(), [img["image"], img["image_raw"]], create_graph=True)
    penalty = sum(g.square().sum() for g in grads)
    penalty.backward()
    assert D.b64.conv0.weight.grad is not None


def test_batch_must_divide_group(D):
    img = {"image": torch.randn(6, 3, 64, 64), "image_raw": torch.randn(6, 3, 16, 16)}
    with pytest.raises(AssertionError, match="minibatch-std group"):
        D(img, canonical_camera().repeat(6, 1))
