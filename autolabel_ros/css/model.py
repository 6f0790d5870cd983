"""The CSS network: a small U-Net on the 4-channel patch (RGB + instance mask, 64 x 64) that
predicts the NOCS on a half-resolution grid (3 channels, sigmoid) and, from the bottleneck, the car's
proportions (l, w, h) / diagonal (the shape code SDFLabel's later steps use). About 0.2 M
parameters: a CPU forward pass on one patch takes a few milliseconds. No pretrained backbone: the
weights come only from the project's simulator (``autolabel-train-css``)."""
from __future__ import annotations

import torch
from torch import nn

PATCH = 64


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CssNet(nn.Module):
    """Encoder 64 -> 32 -> 16 -> 8 -> 4, decoder with skips back to 32: the NOCS map has half the
    patch resolution (32 x 32), plenty for a pose and a front/back decision, and 4x cheaper."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.enc = nn.ModuleList([_block(4, w, 2), _block(w, 2 * w, 2), _block(2 * w, 4 * w, 2),
                                  _block(4 * w, 6 * w, 2)])                       # 32, 16, 8, 4
        self.dec = nn.ModuleList([_block(6 * w + 4 * w, 4 * w, 1), _block(4 * w + 2 * w, 2 * w, 1),
                                  _block(2 * w + w, w, 1)])                       # 8, 16, 32
        self.head = nn.Conv2d(w, 3, 1)
        self.dims = nn.Sequential(nn.Linear(6 * w, 32), nn.ReLU(inplace=True), nn.Linear(32, 3))
        self.width = width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: B x 4 x P x P (RGB in [0, 1], mask 0/1) -> (B x 3 x P/2 x P/2 NOCS in [0, 1], B x 3 dims)."""
        skips = []
        for i, e in enumerate(self.enc):
            x = e(x)
            if i < len(self.enc) - 1:
                skips.append(x)
        dims = torch.sigmoid(self.dims(x.mean(dim=(2, 3))))
        for d, s in zip(self.dec, reversed(skips)):
            x = nn.functional.interpolate(x, size=s.shape[-2:], mode='bilinear', align_corners=False)
            x = d(torch.cat([x, s], 1))
        return torch.sigmoid(self.head(x)), dims
