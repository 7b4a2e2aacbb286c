"""Side-adapter networks over cached per-layer states (decoupled from the frozen backbones).

Three designs (``SideAdapterNetwork(design=...)``), all of which never run a backbone while training: a small
side network reads the backbones' pooled hidden states at the tapped layers (layer dropping: ``select_taps``)
and adapts them with bottleneck adapters, mixed layer by layer through learned gates.

- ``intra``: one side network per modality, fused by a mixture of modality experts.
- ``iisan`` (IISAN, Fu et al., SIGIR 2024; IISAN-Versa, 2024): the intra-modal side networks plus an inter-modal
  side network that reads, at each level, the concatenated states of all modalities. Departures: the backbones'
  outputs are mean-pooled per layer and cached (IISAN caches them too, but keeps token states), so adapters act on
  one vector per item and layer; modalities with different depths are aligned by relative depth (IISAN pairs
  BERT and ViT layer for layer); the three outputs are fused by the mixture of experts, not one linear layer.
- ``crossan`` (CROSSAN, Fu et al., 2025): cross-modal side adapters, each modality's side stream also attending at
  each level over the other modalities' layer states (one query: its own side state; keys and values: their
  projected tap states), scaled by a learned per-level gate that starts at zero (so training starts from
  ``intra``), and a mixture of modality experts on top. Departures: pooled, cached states as above; the
  attention runs over layers (one vector each), not tokens.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ialp.candidates.config import DESIGNS

__all__ = ["DESIGNS", "BottleneckAdapter", "CrossModalAdapter", "InterModalSideNetwork", "ModalityExperts",
           "ModalitySideNetwork", "SideAdapterNetwork", "aligned_levels"]


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
        gates: Learn the gates (``False``: they stay at their initial mix, the ablation).
    """

    def __init__(self, widths: Sequence[int], side_width: int | None = None, bottleneck: int = 64,
                 dropout: float = 0.0, gates: bool = True) -> None:
        super().__init__()
        if not widths:
            raise ValueError("a side network needs at least one tapped layer")
        self.side_width = int(side_width or widths[-1])
        self.proj = nn.ModuleList(
            nn.Identity() if w == self.side_width else nn.Linear(w, self.side_width) for w in widths
        )
        self.adapters = nn.ModuleList(BottleneckAdapter(self.side_width, bottleneck, dropout) for _ in widths)
        self.gate_logits = nn.Parameter(torch.full((len(widths),), GATE_INIT), requires_grad=gates)

    def gates(self) -> torch.Tensor:
        """Weight each tap's side state gives to the previous one, (T,); the first is unused."""
        return torch.sigmoid(self.gate_logits)

    def forward(self, taps: Sequence[torch.Tensor],
                cross: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The last side state; ``cross(t, query)`` adds a term to level t's input (query: the previous side
        state, or at level 0 the projected tap)."""
        gates = self.gates()
        mixed = self.proj[0](taps[0])
        if cross is not None:
            mixed = mixed + cross(0, mixed)
        state = self.adapters[0](mixed)
        for t in range(1, len(taps)):
            mixed = gates[t] * state + (1.0 - gates[t]) * self.proj[t](taps[t])
            if cross is not None:
                mixed = mixed + cross(t, state)
            state = self.adapters[t](mixed)
        return state


def aligned_levels(n_taps: int, n_levels: int) -> list[int]:
    """Which of ``n_taps`` tapped layers sits at each of ``n_levels`` relative depths (the last at the top).

    >>> aligned_levels(9, 4)
    [0, 3, 5, 8]
    """
    if n_levels == 1:
        return [n_taps - 1]
    return [round(t * (n_taps - 1) / (n_levels - 1)) for t in range(n_levels)]


class InterModalSideNetwork(nn.Module):
    """IISAN's inter-modal side network: a ``ModalitySideNetwork`` whose level t reads the concatenation of every
    modality's tap at relative depth t (levels: the fewest taps of any modality).

    Args:
        modality_widths: Tapped-layer widths per modality.
        side_width: Side-state width (default: the smallest deepest-tap width).
        bottleneck: Adapter bottleneck width.
        dropout: Dropout inside the adapters.
        gates: Learn the layer gates.
    """

    def __init__(self, modality_widths: Mapping[str, Sequence[int]], side_width: int | None = None,
                 bottleneck: int = 64, dropout: float = 0.0, gates: bool = True) -> None:
        super().__init__()
        levels = min(len(w) for w in modality_widths.values())
        self.levels = {m: aligned_levels(len(w), levels) for m, w in modality_widths.items()}
        widths = [sum(int(modality_widths[m][idx[t]]) for m, idx in self.levels.items()) for t in range(levels)]
        width = side_width or min(int(w[-1]) for w in modality_widths.values())
        self.side = ModalitySideNetwork(widths, width, bottleneck, dropout, gates)
        self.side_width = self.side.side_width

    def forward(self, taps: Mapping[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        n = len(next(iter(self.levels.values())))
        return self.side([torch.cat([taps[m][idx[t]] for m, idx in self.levels.items()], dim=-1) for t in range(n)])


class CrossModalAdapter(nn.Module):
    """CROSSAN-style cross-modal adapter of one modality's side stream.

    The other modalities' tapped states are projected to the side width (one linear map per tap) and form a
    memory of S vectors per item; at level t the stream's query ``q`` attends over them::

        cross_t(q) = tanh(c_t) * sum_s softmax_s(<W_q q, m_s> / sqrt(d)) m_s

    with per-level gates ``c_t`` that start at zero, so the stream starts as its intra-modal side network.

    Args:
        other_widths: Widths of the other modalities' tapped layers (all of them, in order).
        side_width: d.
        n_levels: Levels of this modality's side stream.
    """

    def __init__(self, other_widths: Sequence[int], side_width: int, n_levels: int) -> None:
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(int(w), side_width) for w in other_widths)
        self.query = nn.Linear(side_width, side_width, bias=False)
        self.cross_gates = nn.Parameter(torch.zeros(n_levels))

    def memory(self, others: Sequence[torch.Tensor]) -> torch.Tensor:
        """The projected tap states of the other modalities, (N, S, d)."""
        return torch.stack([p(x) for p, x in zip(self.proj, others, strict=True)], dim=1)

    def forward(self, t: int, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("nd,nsd->ns", self.query(query), memory) / math.sqrt(memory.shape[-1])
        return torch.tanh(self.cross_gates[t]) * torch.einsum("ns,nsd->nd", scores.softmax(-1), memory)


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
    """Item representations from the tapped layers of one or more frozen encoders (see the module docstring).

    Each modality has a ``ModalitySideNetwork`` (with ``crossan``, a ``CrossModalAdapter`` feeding it) followed by
    a linear map to ``out_width``; ``iisan`` adds an ``InterModalSideNetwork`` with its own map; the vectors are
    fused by ``ModalityExperts``.

    Args:
        modality_widths: Tapped-layer widths per modality, e.g. ``{"text": [384] * 4, "image": [...]}``.
        out_width: Width of the item representation.
        side_width: Side-state width (default: each modality's deepest tap's width).
        bottleneck: Adapter bottleneck width.
        fusion: ``"moe"`` or ``"concat"``.
        dropout: Dropout inside adapters.
        design: ``"intra"``, ``"iisan"`` or ``"crossan"`` (the last two need two or more modalities).
        gates: Learn the layer gates.
    """

    def __init__(self, modality_widths: Mapping[str, Sequence[int]], out_width: int, side_width: int | None = None,
                 bottleneck: int = 64, fusion: str = "moe", dropout: float = 0.0, design: str = "intra",
                 gates: bool = True) -> None:
        super().__init__()
        if design not in DESIGNS:
            raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
        if design != "intra" and len(modality_widths) < 2:
            raise ValueError(f"design {design!r} combines modalities: it needs two or more, got "
                             f"{list(modality_widths)}")
        self.modalities, self.design = list(modality_widths), design
        self.sides = nn.ModuleDict({
            m: ModalitySideNetwork(w, side_width, bottleneck, dropout, gates) for m, w in modality_widths.items()
        })
        side_widths = {m: int(side_width or w[-1]) for m, w in modality_widths.items()}
        self.heads = nn.ModuleDict({m: nn.Linear(side_widths[m], out_width) for m in self.modalities})
        self.inter: InterModalSideNetwork | None = None
        self.cross = nn.ModuleDict()
        n_vectors = len(self.modalities)
        if design == "iisan":
            self.inter = InterModalSideNetwork(modality_widths, side_width, bottleneck, dropout, gates)
            self.inter_head = nn.Linear(self.inter.side_width, out_width)
            n_vectors += 1
        elif design == "crossan":
            for m in self.modalities:
                others = [int(w) for o in self.modalities if o != m for w in modality_widths[o]]
                self.cross[m] = CrossModalAdapter(others, side_widths[m], len(modality_widths[m]))
        self.fusion = ModalityExperts(n_vectors, out_width, fusion)

    def forward(self, taps: Mapping[str, Sequence[torch.Tensor]]) -> torch.Tensor:
        vectors = []
        for m in self.modalities:
            cross = None
            if m in self.cross:
                adapter: CrossModalAdapter = self.cross[m]  # type: ignore[assignment]
                memory = adapter.memory([x for o in self.modalities if o != m for x in taps[o]])
                cross = functools.partial(adapter, memory=memory)
            vectors.append(self.heads[m](self.sides[m](taps[m], cross)))
        if self.inter is not None:
            vectors.append(self.inter_head(self.inter(taps)))
        return self.fusion(vectors)
