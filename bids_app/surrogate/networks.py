"""Summary network S(y) ≈ E[θ̃ | y] and the conditional spline flow q(S | θ̃, protocol).

Smooth activations (SiLU) are used wherever θ̃ enters, so log q is differentiable twice
in θ̃ (the Newton steps of the MAP use its second derivative).
"""

from __future__ import annotations

import itertools

import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms.autoregressive import (
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
)
from nflows.transforms.base import CompositeTransform, Transform
from nflows.transforms.permutations import ReversePermutation
from nflows.transforms.splines.rational_quadratic import unconstrained_rational_quadratic_spline
from torch import nn
from torch.nn import functional as F

# Range of the (standardised) summary on which splines act; linear tails outside.
TAIL_BOUND = 5.0


def mlp(n_in: int, n_out: int, hidden: int, layers: int) -> nn.Sequential:
    """SiLU multilayer perceptron (smooth, so derivatives of any order exist)."""
    sizes = [n_in] + [hidden] * layers
    mods: list[nn.Module] = []
    for a, b in itertools.pairwise(sizes):
        mods += [nn.Linear(a, b), nn.SiLU()]
    mods.append(nn.Linear(sizes[-1], n_out))
    return nn.Sequential(*mods)


class SummaryNet(nn.Module):
    """Regression of θ̃ on the spectral features (posterior-mean summary).

    Inputs are standardised with buffers fitted on the training features, so the stored
    state dict is all a user needs.
    """

    def __init__(self, n_features: int, n_params: int, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_sd", torch.ones(n_features))
        self.net = mlp(n_features, n_params, hidden, layers)

    def fit_scaling(self, features: torch.Tensor) -> None:
        """Set the input standardisation from training features (V, F)."""
        self.feature_mean.copy_(features.mean(0))
        self.feature_sd.copy_(features.std(0).clamp_min(1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.feature_mean) / self.feature_sd)


class ConditionalAffine1D(Transform):
    """z = (x − shift(c))·exp(−log_scale(c)) for a scalar x given context c."""

    def __init__(self, context_features: int, hidden: int, layers: int):
        super().__init__()
        self.net = mlp(context_features, 2, hidden, layers)

    def params(self, context: torch.Tensor) -> torch.Tensor:
        return self.net(context)

    def apply(self, inputs: torch.Tensor, params: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        shift, log_scale = params[..., 0:1], params[..., 1:2]
        log_scale = 3.0 * torch.tanh(log_scale / 3.0)  # keeps scales in e^±3
        outputs = (inputs - shift) * torch.exp(-log_scale)
        return outputs, -log_scale.sum(-1)

    def forward(self, inputs, context=None):
        return self.apply(inputs, self.params(context))

    def inverse(self, inputs, context=None):
        p = self.params(context)
        log_scale = 3.0 * torch.tanh(p[..., 1:2] / 3.0)
        return inputs * torch.exp(log_scale) + p[..., 0:1], log_scale.sum(-1)


class ConditionalSpline1D(Transform):
    """Element-wise rational-quadratic spline on one feature whose knots come from a
    context network (nflows' coupling/autoregressive splines need ≥ 2 features)."""

    def __init__(self, context_features: int, hidden: int, layers: int, num_bins: int = 8):
        super().__init__()
        self.num_bins = num_bins
        self.net = mlp(context_features, 3 * num_bins - 1, hidden, layers)

    def params(self, context: torch.Tensor) -> torch.Tensor:
        return self.net(context)

    def apply(self, inputs: torch.Tensor, params: torch.Tensor, inverse: bool = False
              ) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.num_bins
        out, logdet = unconstrained_rational_quadratic_spline(
            inputs,
            params[..., None, :k],
            params[..., None, k: 2 * k],
            params[..., None, 2 * k:],
            inverse=inverse, tails="linear", tail_bound=TAIL_BOUND,
        )
        return out, logdet.sum(-1)

    def forward(self, inputs, context=None):
        return self.apply(inputs, self.params(context))

    def inverse(self, inputs, context=None):
        return self.apply(inputs, self.params(context), inverse=True)


class ScalarFlow(nn.Module):
    """Conditional density q(s | c) of a scalar summary: standard normal base pushed
    through alternating conditional affine and spline layers.

    ``log_prob_grid`` evaluates the context networks once per context row and reuses
    them for every summary value, which is what makes tabulation cheap.
    """

    def __init__(self, context_features: int, n_layers: int = 4, hidden: int = 64,
                 layers: int = 3, num_bins: int = 8):
        super().__init__()
        self.register_buffer("summary_mean", torch.zeros(1))
        self.register_buffer("summary_sd", torch.ones(1))
        blocks: list[Transform] = []
        for _ in range(n_layers):
            blocks += [ConditionalAffine1D(context_features, hidden, layers),
                       ConditionalSpline1D(context_features, hidden, layers, num_bins)]
        self.blocks = nn.ModuleList(blocks)

    def fit_scaling(self, summaries: torch.Tensor) -> None:
        self.summary_mean.copy_(summaries.mean(0))
        self.summary_sd.copy_(summaries.std(0).clamp_min(1e-3))

    def _log_prob_from_params(self, s: torch.Tensor, params: list[torch.Tensor]
                              ) -> torch.Tensor:
        z = (s - self.summary_mean) / self.summary_sd
        total = -torch.log(self.summary_sd).sum().expand(z.shape[:-1])
        for block, p in zip(self.blocks, params, strict=True):
            z, logdet = block.apply(z, p)
            total = total + logdet
        base = -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * torch.log(torch.tensor(2 * torch.pi))
        return base + total

    def log_prob(self, s: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """log q(s | c) for s (N, 1) and c (N, C); returns (N,)."""
        return self._log_prob_from_params(s, [b.params(context) for b in self.blocks])

    def log_prob_grid(self, s_grid: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """log q on the outer grid: s_grid (K,), context (M, C) → (K, M)."""
        k, m = s_grid.shape[0], context.shape[0]
        params = [b.params(context)[None].expand(k, m, -1).reshape(k * m, -1)
                  for b in self.blocks]
        s = s_grid[:, None].expand(k, m).reshape(k * m, 1)
        return self._log_prob_from_params(s, params).reshape(k, m)

    @torch.no_grad()
    def sample(self, context: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of s (N, 1) per context row (for calibration checks)."""
        z = torch.randn(context.shape[0], 1, generator=generator, dtype=context.dtype)
        for block in reversed(self.blocks):
            z, _ = block.inverse(z, context)
        return z * self.summary_sd + self.summary_mean


class VectorFlow(nn.Module):
    """Conditional density q(s | c) of a multi-dimensional summary: nflows masked
    autoregressive rational-quadratic splines (SiLU MADE) with reversed orderings."""

    def __init__(self, n_summary: int, context_features: int, n_layers: int = 4,
                 hidden: int = 64, num_bins: int = 8):
        super().__init__()
        self.register_buffer("summary_mean", torch.zeros(n_summary))
        self.register_buffer("summary_sd", torch.ones(n_summary))
        transforms: list[Transform] = []
        for _ in range(n_layers):
            transforms += [
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=n_summary, hidden_features=hidden,
                    context_features=context_features, num_bins=num_bins,
                    tails="linear", tail_bound=TAIL_BOUND, num_blocks=2,
                    activation=F.silu),
                ReversePermutation(n_summary),
            ]
        self.flow = Flow(CompositeTransform(transforms), StandardNormal([n_summary]))

    def fit_scaling(self, summaries: torch.Tensor) -> None:
        self.summary_mean.copy_(summaries.mean(0))
        self.summary_sd.copy_(summaries.std(0).clamp_min(1e-3))

    def log_prob(self, s: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """log q(s | c) for s (N, P), c (N, C); returns (N,)."""
        z = (s - self.summary_mean) / self.summary_sd
        return self.flow.log_prob(z, context=context) - torch.log(self.summary_sd).sum()

    @torch.no_grad()
    def sample(self, context: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of s (N, P) per context row."""
        n = self.summary_mean.shape[0]
        noise = torch.randn(context.shape[0], n, generator=generator, dtype=context.dtype)
        z, _ = self.flow._transform.inverse(noise, context=context)
        return z * self.summary_sd + self.summary_mean


def build_flow(n_summary: int, context_features: int, **sizes: int) -> nn.Module:
    """ScalarFlow for one summary, VectorFlow for more."""
    if n_summary == 1:
        return ScalarFlow(context_features, **sizes)
    return VectorFlow(n_summary, context_features, **sizes)
