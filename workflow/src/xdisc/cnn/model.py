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

With ``depth_head`` a second output says where X is: a 1-D convolution scores every position of the
depth profile of features (one position per 8 depth samples, 20 km at the default 2.5 km step) between
``depth_window_km``, a softmax over them is the probability of X's depth being there, and its mean and
standard deviation are the depth estimate and its uncertainty (:meth:`XNet.depth`). It is trained on
the stations with X against a Gaussian of 10 km around the true depth
(:class:`xdisc.cnn.module.XClassifier`) and leaves the classification branch as it is; off in the
constructor (old checkpoints load unchanged), on in the configuration.
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
                 noise_scale: float = 10.0, derived_features: bool = False, t_clip: float = 10.0,
                 depth_head: bool = False, depth_range_km: tuple = (0.0, 800.0),
                 depth_window_km: tuple = (200.0, 400.0)):
        super().__init__()
        self.config = {"n_channels": n_channels, "n_slowness_bins": n_slowness_bins, "n_depth": n_depth,
                       "width": width, "hidden": hidden, "dropout": dropout, "amplitude_scale": amplitude_scale,
                       "noise_scale": noise_scale, "derived_features": derived_features, "t_clip": t_clip,
                       "depth_head": depth_head, "depth_range_km": tuple(depth_range_km),
                       "depth_window_km": tuple(depth_window_km)}
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
        self.depth_branch = None
        if depth_head:
            self.depth_branch = nn.Conv1d(4 * w, 1, 3, padding=1)
            # depth (km) at the centre of each feature position: 8 input samples per position
            step = (depth_range_km[1] - depth_range_km[0]) / (n_depth - 1)
            centres = depth_range_km[0] + (8 * torch.arange(n_out, dtype=torch.float32) + 3.5) * step
            inside = (centres >= depth_window_km[0]) & (centres <= depth_window_km[1])
            self.register_buffer("depth_centres_km", centres[inside])
            self.register_buffer("depth_inside", inside)
            self.depth_bin_km = 8 * step

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

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logit, and (with the depth head) the log-probability of X's depth at each position of
        ``depth_centres_km``."""
        f = self.features(self.derive(x))
        logit = self.head(f).squeeze(-1)
        if self.depth_branch is None:
            return logit, None
        scores = self.depth_branch(f)[:, 0, :][:, self.depth_inside]
        return logit, torch.log_softmax(scores, dim=-1)

    def depth_moments(self, logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean depth and standard deviation (km) of depth log-probabilities (the spread of one
        position included)."""
        p = logp.exp()
        mu = (p * self.depth_centres_km).sum(-1)
        var = (p * (self.depth_centres_km - mu[:, None]) ** 2).sum(-1) + self.depth_bin_km**2 / 12.0
        return mu, var.sqrt()

    def depth(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean depth and standard deviation of X (km) as the depth head sees it (needs ``depth_head``)."""
        if self.depth_branch is None:
            raise ValueError("this network has no depth head (cnn.network.depth_head)")
        return self.depth_moments(self.forward_all(x)[1])
