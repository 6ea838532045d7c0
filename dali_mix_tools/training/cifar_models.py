"""The CIFAR networks of the papers' tables, which torchvision does not ship.

- `preact_resnet18`: PreAct-ResNet-18 (He et al. 2016, "Identity mappings"), the CIFAR model of
  the Mixup and RandomMix papers: 3x3 stem, four stages of two pre-activation basic blocks
  (64, 128, 256, 512 channels, strides 1, 2, 2, 2), final BN-ReLU, global average pooling.
- `wide_resnet28_10`: WRN-28-10 (Zagoruyko & Komodakis 2016), the CIFAR model of the RandomMix,
  CutMix and MixMo tables: 3x3 stem (16 channels), three stages of four pre-activation blocks
  of width 160, 320, 640 (strides 1, 2, 2), final BN-ReLU, pooling. No dropout.

Both take (N, 3, 32, 32) float32 and return (N, num_classes) logits, and expose the attributes
`MixMoNet` splits a ResNet by (conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc): bn1,
relu and maxpool are identities (pre-activation nets normalise inside the blocks); in the WRN,
layer4 is the final BN-ReLU.
"""
from __future__ import annotations

import torch.nn as nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3, with a 1x1 projection on the activated input when the
    shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None if stride == 1 and cin == cout else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        a = self.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(a)
        return self.conv2(self.relu(self.bn2(self.conv1(a)))) + skip


class CifarPreActNet(nn.Module):
    """A pre-activation ResNet on 32x32 images (see the module docstring)."""

    def __init__(self, widths: list[int], blocks: int, num_classes: int, stem: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn1, self.relu, self.maxpool = nn.Identity(), nn.Identity(), nn.Identity()
        stages, cin = [], stem
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(*[PreActBlock(cin if b == 0 else w, w, (1 if i == 0 else 2) if b == 0 else 1)
                                          for b in range(blocks)]))
            cin = w
        final = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        if len(stages) == 4:
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.final = final
        else:
            self.layer1, self.layer2, self.layer3 = stages
            self.layer4, self.final = final, nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.final(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        return self.fc(self.avgpool(x).flatten(1))


def preact_resnet18(num_classes: int) -> nn.Module:
    return CifarPreActNet([64, 128, 256, 512], 2, num_classes, stem=64)


def wide_resnet28_10(num_classes: int) -> nn.Module:
    return CifarPreActNet([160, 320, 640], 4, num_classes, stem=16)


CIFAR_MODELS = {"preact_resnet18": preact_resnet18, "wide_resnet28_10": wide_resnet28_10}
