"""Small segmentation models for the reference trainer, built from torchvision's parts.

`fcn_resnet18`: torchvision's `FCN` with an `FCNHead` on a ResNet-18 trunk cut after layer3
(256 channels at 1/8 of the input: a 3x3 stride-2 stem, no max-pooling), the logits
upsampled bilinearly to the input size. Sized for small images (the generated scenes, 64 px)
on a CPU. Input (N, 3, H, W) float32; output {"out": (N, num_classes, H, W)} as torchvision's
segmentation models give.
"""
from __future__ import annotations

import torch.nn as nn
import torchvision
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.fcn import FCN, FCNHead


def fcn_resnet18(num_classes: int) -> nn.Module:
    trunk = torchvision.models.resnet18(weights=None)
    trunk.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
    trunk.maxpool = nn.Identity()
    backbone = IntermediateLayerGetter(trunk, return_layers={"layer3": "out"})
    return FCN(backbone, FCNHead(256, num_classes))


SEGMENTATION_MODELS = {"fcn_resnet18": fcn_resnet18}
"""Name -> constructor(num_classes) of the models `train.py --task segmentation --model` takes."""
