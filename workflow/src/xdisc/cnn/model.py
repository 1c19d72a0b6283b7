"""XNet: a compact CNN that tells receiver-function images with an X conversion from those without.

Input: images (batch, channel, slowness_bin, depth) from :mod:`xdisc.cnn.images` (channels
``amplitude`` and ``noise``). Two 2-D convolution blocks (kernels span 3 slowness bins, so
they see moveout across bins; pooling along depth only), a convolution over all slowness bins
that collapses that axis, two 1-D blocks along depth, and a small dense head on the flattened
depth profile of features: the head keeps depth position, because X is defined by where a
conversion is (250-350 km). About 0.2 M parameters and 12 M multiply-adds per image: fast on two
CPU cores.

With ``derived_features`` the network first adds two channels it would otherwise have to learn
to compute (a division is hard for a stack of ReLU layers): the t-value of every bin,
amplitude / noise, and the t-value of the inverse-variance weighted stack over all slowness bins
at each depth, sum_b(a_b / s_b^2) / sqrt(sum_b 1 / s_b^2) (the known-depth detection statistic of a
conversion that the moveout correction lines up across bins), copied to every bin. Both are
soft-clipped at +-``t_clip`` so that clean data do not saturate the first layer. (The
constructor's default is off, so that checkpoints written before the option load unchanged; the
configuration's default, ``cnn.network.derived_features``, is on.)
"""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int, kernel: tuple, pool: int = 1, dim: int = 2) -> nn.Sequential:
    if dim == 2:
        conv, norm, mp = nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
    else:
        conv, norm, mp = nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
    pad = tuple(k // 2 for k in kernel) if dim == 2 else kernel[0] // 2
    layers = [conv(c_in, c_out, kernel if dim == 2 else kernel[0], padding=pad, bias=False), norm(c_out),
              nn.ReLU(inplace=True)]
    if pool > 1:
        layers.append(mp((1, pool) if dim == 2 else pool))
    return nn.Sequential(*layers)


class XNet(nn.Module):
    """Binary classifier of RF images; returns one logit per image (X present > 0)."""

    def __init__(self, n_channels: int = 2, n_slowness_bins: int = 9, n_depth: int = 321, width: int = 16,
                 hidden: int = 64, dropout: float = 0.3, amplitude_scale: float = 10.0,
                 noise_scale: float = 10.0, derived_features: bool = False, t_clip: float = 10.0):
        super().__init__()
        self.config = {"n_channels": n_channels, "n_slowness_bins": n_slowness_bins, "n_depth": n_depth,
                       "width": width, "hidden": hidden, "dropout": dropout, "amplitude_scale": amplitude_scale,
                       "noise_scale": noise_scale, "derived_features": derived_features, "t_clip": t_clip}
        if derived_features and n_channels != 2:
            raise ValueError("derived_features needs the two channels amplitude and noise")
        self.derived, self.t_clip = derived_features, t_clip
        scale = torch.ones(n_channels)
        scale[0] = amplitude_scale
        if n_channels > 1:
            scale[1] = noise_scale
        self.register_buffer("input_scale", scale.view(1, n_channels, 1, 1))
        w = width
        # 2-D blocks see moveout across neighbouring slowness bins; then one convolution spanning
        # every bin (a learnt slant stack) collapses the slowness axis; 1-D blocks along depth.
        self.features = nn.Sequential(
            _block(n_channels + 2 * derived_features, w, (3, 7), pool=4),
            _block(w, 2 * w, (3, 5)),
            nn.Conv2d(2 * w, 4 * w, (n_slowness_bins, 1), bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            nn.Flatten(1, 2),
            _block(4 * w, 4 * w, (5,), pool=2, dim=1),
            _block(4 * w, 4 * w, (5,), dim=1),
        )
        n_out = (n_depth // 4) // 2
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * w * n_out, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    def derive(self, x: torch.Tensor) -> torch.Tensor:
        """Input channels: scaled amplitude and noise, plus (``derived_features``) the bin t-values
        and the t-value of the weighted stack over bins, both soft-clipped and divided by 3."""
        scaled = x * self.input_scale
        if not self.derived:
            return scaled
        amp, noise = x[:, :1], x[:, 1:2].clamp_min(1e-4)
        t = amp / noise
        w = noise.pow(-2)
        stack_t = (amp * w).sum(dim=2, keepdim=True) / w.sum(dim=2, keepdim=True).sqrt()
        c = self.t_clip
        t, stack_t = (c * torch.tanh(v / c) / 3.0 for v in (t, stack_t))
        return torch.cat([scaled, t, stack_t.expand_as(t)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.derive(x))).squeeze(-1)
