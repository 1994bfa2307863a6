"""An independent PyTorch MobileFaceNet for the converter tests (NCHW, the original layout).

Written from MobileFaceNets (Chen et al. 2018) Table 1 with the 112×96 input and the module
names of the public PyTorch checkpoint (Xiaoccer/MobileFaceNet_Pytorch ``068.ckpt``), so its
``state_dict`` has exactly that checkpoint's keys: ``load_state_dict(strict=True)`` of the
real file is part of the tests. Nothing here is imported by the package.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# (expansion t, channels c, repeats n, first stride s) — MobileFaceNets Table 1.
SETTING = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


class Unit(nn.Module):
    """``conv`` (no bias) -> ``bn`` -> ``prelu`` (absent when ``linear``)."""

    def __init__(self, c_in, c_out, kernel, stride=1, padding=0, groups=1, linear=False):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.prelu = None if linear else nn.PReLU(c_out)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class InvertedResidual(nn.Module):
    """``conv`` = Sequential(1×1, BN, PReLU, depthwise 3×3, BN, PReLU, 1×1, BN)."""

    def __init__(self, c_in, c_out, stride, t):
        super().__init__()
        hidden = c_in * t
        self.residual = stride == 1 and c_in == c_out
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.PReLU(hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class TorchMobileFaceNet(nn.Module):
    """``f32[B, 3, 112, 96]`` (already ``(x − 127.5) / 128``) -> ``f32[B, 128]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = Unit(3, 64, 3, 2, 1)
        self.dw_conv1 = Unit(64, 64, 3, 1, 1, groups=64)
        blocks, c_in = [], 64
        for t, c, n, s in SETTING:
            for r in range(n):
                blocks.append(InvertedResidual(c_in, c, s if r == 0 else 1, t))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = Unit(128, 512, 1)
        self.linear7 = Unit(512, 512, (7, 6), groups=512, linear=True)
        self.linear1 = Unit(512, 128, 1, linear=True)

    def forward(self, x):
        x = self.dw_conv1(self.conv1(x))
        x = self.linear1(self.linear7(self.conv2(self.blocks(x))))
        return x.flatten(1)


def randomize_(net: nn.Module, seed: int) -> nn.Module:
    """Random weights *and* random BatchNorm statistics / affine terms and PReLU slopes (so
    a converter that drops or swaps any of them fails), scaled to keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g)

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / np.sqrt(fan_in))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(uniform(m.weight.shape, 0.5, 1.5))
                m.bias.copy_(uniform(m.bias.shape, -0.2, 0.2))
                m.running_mean.copy_(uniform(m.running_mean.shape, -0.3, 0.3))
                m.running_var.copy_(uniform(m.running_var.shape, 0.5, 2.0))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(uniform(m.weight.shape, 0.0, 0.5))
    return net.eval()


def torch_embed(net: nn.Module, images: np.ndarray, flip: bool = False) -> np.ndarray:
    """The original's evaluation: ``uint8``-scale RGB 112×112 crops ``f32[B, 112, 112, 3]`` in
    ``[0, 1]`` -> trim to 112×96, ``(255·x − 127.5) / 128``, NCHW; ``flip`` appends the
    mirrored crop's embedding. Returns ``f32[B, 128 or 256]``."""
    x = np.asarray(images, np.float32)[:, :, 8:104] * 255.0
    x = (x - 127.5) / 128.0
    crops = [x, x[:, :, ::-1]] if flip else [x]
    with torch.no_grad():
        outs = [net(torch.from_numpy(np.ascontiguousarray(c.transpose(0, 3, 1, 2)))) for c in crops]
    return np.concatenate([o.numpy() for o in outs], axis=1)
