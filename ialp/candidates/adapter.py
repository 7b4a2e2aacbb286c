"""Side-adapter network over cached per-layer states (decoupled from the frozen backbones).

In the spirit of decoupled side-adapter networks (IISAN, IISAN-Versa, CROSSAN): the backbones are never
run during training; a small side network reads their pooled hidden states at the tapped layers and
adapts them with bottleneck adapters, gated per layer, and the modalities are fused by a mixture of
modality experts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["BottleneckAdapter", "ModalityExperts", "ModalitySideNetwork", "SideAdapterNetwork"]

GATE_INIT = -4.0
"""Initial gate logit: sigmoid(-4) = 0.018 of the weight goes to the previous side state."""


class BottleneckAdapter(nn.Module):
    """``x + W_up act(W_down LayerNorm(x))``; ``W_up`` starts at zero, so the block starts as the identity."""

    def __init__(self, width: int, bottleneck: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop(self.up(self.act(self.down(self.norm(x)))))


class ModalitySideNetwork(nn.Module):
    """Side network of one modality over its T tapped layers.

    With ``x_t = P_t h_t`` (``P_t`` a per-tap linear projection to the side width where the tap's width
    differs, else the identity) and ``a_t = sigmoid(g_t)`` a learned scalar gate per tap::

        s_0 = A_0(x_0),    s_t = A_t(a_t * s_{t-1} + (1 - a_t) * x_t),    out = s_{T-1}

    ``A_t`` are bottleneck adapters (identity at start) and ``g_t`` starts at ``GATE_INIT``, so the network
    starts close to returning the deepest tapped layer (the backbone's own output).

    Args:
        widths: Width of each tapped layer.
        side_width: Width of the side states (default: the deepest tap's width).
        bottleneck: Adapter bottleneck width.
        dropout: Dropout inside the adapters.
    """

    def __init__(self, widths: Sequence[int], side_width: int | None = None, bottleneck: int = 64,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if not widths:
            raise ValueError("a side network needs at least one tapped layer")
        self.side_width = int(side_width or widths[-1])
        self.proj = nn.ModuleList(
            nn.Identity() if w == self.side_width else nn.Linear(w, self.side_width) for w in widths
        )
        self.adapters = nn.ModuleList(BottleneckAdapter(self.side_width, bottleneck, dropout) for _ in widths)
        self.gate_logits = nn.Parameter(torch.full((len(widths),), GATE_INIT))

    def gates(self) -> torch.Tensor:
        """Weight each tap's side state gives to the previous one, (T,); the first is unused."""
        return torch.sigmoid(self.gate_logits)

    def forward(self, taps: Sequence[torch.Tensor]) -> torch.Tensor:
        gates = self.gates()
        state = self.adapters[0](self.proj[0](taps[0]))
        for t in range(1, len(taps)):
            mixed = gates[t] * state + (1.0 - gates[t]) * self.proj[t](taps[t])
            state = self.adapters[t](mixed)
        return state


class ModalityExperts(nn.Module):
    """Fusion of M modality vectors by a mixture of modality experts, or by concatenation (the ablation).

    The published side-adapter papers leave the expert-fusion equations open; these are our design.
    With modality vectors ``e_m`` (width d), global cross-modality gate ``w = M * softmax(c)`` (learned
    logits ``c``, zero at start so ``w_m = 1``) and ``z = [w_1 e_1; ...; w_M e_M]``::

        concat:  y = W z + b
        moe:     y = W z + b + sum_j pi_j(z) * E_j(z),   pi(z) = softmax(R z / tau)

    where the experts ``E_j`` are two-layer MLPs whose output layers start at zero (so the mixture starts as
    the concatenation) and by default there is one expert per modality (``n_experts = M``) plus one shared.

    Args:
        n_modalities: M.
        width: d, the width of each modality vector and of the output.
        fusion: ``"moe"`` or ``"concat"``.
        n_experts: Number of experts (default M + 1).
        hidden: Hidden width of each expert.
        temperature: Router temperature ``tau``.
    """

    def __init__(self, n_modalities: int, width: int, fusion: str = "moe", n_experts: int | None = None,
                 hidden: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if fusion not in ("moe", "concat"):
            raise ValueError(f"fusion must be 'moe' or 'concat', got {fusion!r}")
        self.fusion, self.temperature = fusion, float(temperature)
        self.modality_logits = nn.Parameter(torch.zeros(n_modalities))
        self.out = nn.Linear(n_modalities * width, width)
        if n_modalities == 1:  # start as the identity on the single modality
            nn.init.eye_(self.out.weight)
            nn.init.zeros_(self.out.bias)
        self.router: nn.Linear | None = None
        self.experts = nn.ModuleList()
        if fusion == "moe":
            n = n_experts or n_modalities + 1
            self.router = nn.Linear(n_modalities * width, n)
            for _ in range(n):
                last = nn.Linear(hidden, width)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                self.experts.append(nn.Sequential(nn.Linear(n_modalities * width, hidden), nn.GELU(), last))

    def modality_weights(self) -> torch.Tensor:
        """Cross-modality gate ``w`` (M,), mean 1."""
        return len(self.modality_logits) * torch.softmax(self.modality_logits, dim=0)

    def routing(self, z: torch.Tensor) -> torch.Tensor:
        """Router probabilities (N, n_experts) for the gated concatenation ``z``."""
        assert self.router is not None
        return torch.softmax(self.router(z) / self.temperature, dim=-1)

    def forward(self, modalities: Sequence[torch.Tensor]) -> torch.Tensor:
        w = self.modality_weights()
        z = torch.cat([w[m] * e for m, e in enumerate(modalities)], dim=-1)
        y = self.out(z)
        if self.router is not None:
            pi = self.routing(z)
            experts = torch.stack([expert(z) for expert in self.experts], dim=-2)  # (N, E, d)
            y = y + (pi.unsqueeze(-1) * experts).sum(-2)
        return y


class SideAdapterNetwork(nn.Module):
    """Item representations from the tapped layers of several frozen encoders.

    Each modality has a ``ModalitySideNetwork`` followed by a linear map to ``out_width``; the modality
    vectors are fused by ``ModalityExperts``.

    Args:
        modality_widths: Tapped-layer widths per modality, e.g. ``{"text": [384] * 7}``.
        out_width: Width of the item representation.
        side_width: Side-state width per modality (default: its deepest tap's width).
        bottleneck: Adapter bottleneck width.
        fusion: ``"moe"`` or ``"concat"``.
        dropout: Dropout inside adapters.
    """

    def __init__(self, modality_widths: Mapping[str, Sequence[int]], out_width: int, side_width: int | None = None,
                 bottleneck: int = 64, fusion: str = "moe", dropout: float = 0.0) -> None:
        super().__init__()
        self.modalities = list(modality_widths)
        self.sides = nn.ModuleDict({
            m: ModalitySideNetwork(w, side_width, bottleneck, dropout) for m, w in modality_widths.items()
        })
        self.heads = nn.ModuleDict({m: nn.Linear(int(w[-1] if side_width is None else side_width), out_width)
                                    for m, w in modality_widths.items()})
        self.fusion = ModalityExperts(len(self.modalities), out_width, fusion)

    def forward(self, taps: Mapping[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        vectors = [self.heads[m](self.sides[m](taps[m])) for m in self.modalities]
        return self.fusion(vectors)
