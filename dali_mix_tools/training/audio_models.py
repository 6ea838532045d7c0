"""A small keyword-spotting CNN for one-channel log-mel spectrograms (`--model kws_cnn`).

Why not only a ResNet: on this project's 2 shared CPU cores a torchvision resnet18 (with the
1-channel small-input stem of `build_model`) costs about 250 M multiply-adds per 40x101
spectrogram; this net, three VGG-style blocks of two 3x3 convolutions (32, 64, 128 channels,
the first convolution with stride 2, max-pooling between blocks) then global average pooling,
dropout and one linear layer, costs about 37 M, so a few epochs on the synthesised set fit in
minutes. Any input size works (global pooling); batch norm after every convolution.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["KeywordCNN", "AUDIO_MODELS"]


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class KeywordCNN(nn.Module):
    """(N, in_channels, mels, frames) float32 -> (N, num_classes) logits."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32, dropout: float = 0.2):
        super().__init__()
        w = width
        self.features = nn.Sequential(*_block(in_channels, w, stride=2), nn.MaxPool2d(2),
                                      *_block(w, 2 * w), nn.MaxPool2d(2), *_block(2 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


#: model names `dali_mix_tools.training.support.build_model` builds here rather than from torchvision
AUDIO_MODELS = {"kws_cnn": KeywordCNN}
