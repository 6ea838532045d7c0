"""The CIFAR networks of the papers' tables: the published sizes, and they fit MixMoNet."""
import torch

from dali_mix.torch import MixMoNet
from dali_mix_tools.training.support import build_model


def test_wide_resnet28_10_has_the_published_parameter_count():
    # WRN-28-10 on CIFAR-10: 36.5M parameters (Zagoruyko & Komodakis 2016, Table 1)
    model = build_model("wide_resnet28_10", 10, small_images=True)
    assert sum(p.numel() for p in model.parameters()) == 36_479_194
    assert model.conv1.stride == (1, 1)  # the 32x32 stem is kept as built


def test_preact_resnet18_is_resnet18_sized_and_keeps_the_full_resolution():
    model = build_model("preact_resnet18", 100, small_images=True)
    # PreAct-ResNet-18 of the Mixup code: 11,171,146 parameters with 10 classes; 90 more classes
    # add 90 x (512 + 1); the final BN-ReLU of He et al. adds 2 x 512
    assert sum(p.numel() for p in model.parameters()) == 11_171_146 + 90 * 513 + 1024
    feats = {}
    model.layer4.register_forward_hook(lambda m, i, o: feats.update(layer4=o.shape))  # returns None
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert feats["layer4"] == (2, 512, 4, 4)  # 32 / 8: strides 1, 2, 2, 2 and no max-pool


def test_cifar_models_split_into_mixmo_encoders():
    torch.manual_seed(0)
    net = MixMoNet(build_model("wide_resnet28_10", 10), 10)
    x = torch.randn(2, 3, 32, 32)
    heads = net.forward_heads(x)
    assert heads.shape == (2, 2, 10)
    torch.testing.assert_close(net(x), heads.mean(dim=1))
