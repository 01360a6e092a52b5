"""A small YOLOX-style detector for the training demo: a strided conv backbone and a decoupled head on three levels.

Input: images [B, 3, S, S] with S divisible by 32. Output: one raw map [B, 1, S / s, S / s, 5 + C] per stride s in
``STRIDES``, channels (x, y, log w, log h) box logits relative to the cell, objectness logit, C class logits: the
layout the losses take. As in YOLOX, the objectness and class biases start at the 1 % prior.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

STRIDES = (8, 16, 32)
#: Initial probability of the objectness and class outputs (YOLOX's ``prior_prob``).
PRIOR_PROB = 0.01


def conv_block(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + SiLU, padding keeping the size up to the stride."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Backbone(nn.Module):
    """Strided convs; returns features at strides 8, 16, 32 with ``widths`` channels."""

    def __init__(self, widths: tuple[int, int, int]):
        super().__init__()
        w8, w16, w32 = widths
        self.stem = nn.Sequential(conv_block(3, 16, stride=2), conv_block(16, 32, stride=2),
                                  conv_block(32, w8, stride=2), conv_block(w8, w8))  # stride 8
        self.down16 = nn.Sequential(conv_block(w8, w16, stride=2), conv_block(w16, w16))
        self.down32 = nn.Sequential(conv_block(w16, w32, stride=2), conv_block(w32, w32))

    def forward(self, images: Tensor) -> list[Tensor]:
        p8 = self.stem(images)
        p16 = self.down16(p8)
        return [p8, p16, self.down32(p16)]


class DecoupledHead(nn.Module):
    """One level of YOLOX's head: a 1x1 stem, then a class branch and a box + objectness branch."""

    def __init__(self, cin: int, width: int, num_classes: int):
        super().__init__()
        self.stem = conv_block(cin, width, kernel=1)
        self.cls_branch = conv_block(width, width)
        self.reg_branch = conv_block(width, width)
        self.cls_pred = nn.Conv2d(width, num_classes, 1)
        self.reg_pred = nn.Conv2d(width, 4, 1)
        self.obj_pred = nn.Conv2d(width, 1, 1)
        prior_bias = -math.log((1 - PRIOR_PROB) / PRIOR_PROB)
        nn.init.constant_(self.cls_pred.bias, prior_bias)
        nn.init.constant_(self.obj_pred.bias, prior_bias)

    def forward(self, features: Tensor) -> Tensor:
        x = self.stem(features)
        reg = self.reg_branch(x)
        out = torch.cat((self.reg_pred(reg), self.obj_pred(reg), self.cls_pred(self.cls_branch(x))), 1)  # [B, 5+C, H, W]
        return out.permute(0, 2, 3, 1).unsqueeze(1)  # [B, 1, H, W, 5 + C]


class TinyYoloX(nn.Module):
    """Backbone + one decoupled head per level. ``forward(images [B, 3, S, S])`` -> list of [B, 1, H, W, 5 + C]."""

    def __init__(self, num_classes: int, width: int = 32, backbone_widths: tuple[int, int, int] = (32, 48, 64)):
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.backbone = Backbone(backbone_widths)
        self.heads = nn.ModuleList(DecoupledHead(c, width, num_classes) for c in backbone_widths)

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] % STRIDES[-1] or images.shape[3] % STRIDES[-1]:
            raise ValueError(f"images must be [B, 3, H, W] with H and W divisible by {STRIDES[-1]}, "
                             f"got {tuple(images.shape)}")
        return [head(f) for head, f in zip(self.heads, self.backbone(images))]


def build_model(num_classes: int, seed: int, width: int = 32) -> TinyYoloX:
    """A ``TinyYoloX`` whose initial weights depend on ``seed`` only (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyYoloX(num_classes, width=width)
