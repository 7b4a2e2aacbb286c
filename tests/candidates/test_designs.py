"""The side-network designs (intra, IISAN's inter-modal network, CROSSAN's cross-modal adapters), gates, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ialp.candidates import CandidatesConfig
from ialp.candidates.adapter import SideAdapterNetwork, aligned_levels
from ialp.candidates.config import ConfigError, load_candidates_config
from ialp.candidates.generator import fit_recommender
from ialp.candidates.sequential import SideItemTower

WIDTHS = {"text": [12, 12, 12], "image": [4, 6, 8, 10, 16]}


def _taps(n: int = 5, seed: int = 0) -> dict[str, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return {m: [torch.randn(n, w, generator=g) for w in ws] for m, ws in WIDTHS.items()}


def test_aligned_levels_keep_first_and_last() -> None:
    assert aligned_levels(9, 4) == [0, 3, 5, 8] and aligned_levels(3, 3) == [0, 1, 2] and aligned_levels(7, 1) == [6]


@pytest.mark.parametrize("design", ["intra", "iisan", "crossan"])
def test_designs_shapes_and_gradients(design: str) -> None:
    torch.manual_seed(0)
    net = SideAdapterNetwork(WIDTHS, 8, side_width=10, bottleneck=4, design=design)
    out = net(_taps())
    assert out.shape == (5, 8)
    out.pow(2).sum().backward()
    if design == "iisan":  # the inter-modal network reads both modalities at 3 aligned levels
        assert net.inter is not None and net.inter.levels == {"text": [0, 1, 2], "image": [0, 2, 4]}
        assert net.inter.side.proj[0].weight.shape == (10, 12 + 4)
        assert net.inter_head.weight.grad is not None and float(net.inter_head.weight.grad.abs().sum()) > 0
    if design == "crossan":  # the cross gates start at 0, and they are what learns the cross-modal term
        for m in WIDTHS:
            gate = net.cross[m].cross_gates
            assert torch.all(gate == 0) and gate.grad is not None and float(gate.grad.abs().sum()) > 0
    assert net.fusion.out.in_features == 8 * (3 if design == "iisan" else 2)


def test_crossan_starts_as_intra_and_gates_can_be_fixed() -> None:
    torch.manual_seed(0)
    net = SideAdapterNetwork(WIDTHS, 8, side_width=10, bottleneck=4, design="crossan")
    taps = _taps()
    with torch.no_grad():
        with_cross = net(taps)
        cross, net.cross = net.cross, torch.nn.ModuleDict()
        without = net(taps)
        net.cross = cross
        net.cross["text"].cross_gates.fill_(0.5)
        moved = net(taps)
    torch.testing.assert_close(with_cross, without)  # tanh(0) = 0: no cross-modal term at the start
    assert not torch.allclose(moved, without)
    fixed = SideAdapterNetwork(WIDTHS, 8, side_width=10, bottleneck=4, design="iisan", gates=False)
    assert all(not side.gate_logits.requires_grad for side in fixed.sides.values())
    assert not fixed.inter.side.gate_logits.requires_grad  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="two or more"):
        SideAdapterNetwork({"text": [12, 12]}, 8, design="iisan")


def test_side_chunks_are_checkpointed_and_exact() -> None:
    rng = np.random.default_rng(0)
    taps = {m: [rng.standard_normal((40, w)).astype(np.float16) for w in ws] for m, ws in WIDTHS.items()}
    torch.manual_seed(0)
    whole = SideItemTower(taps, 8, bottleneck=4, design="crossan", side_width=10)
    chunked = SideItemTower(taps, 8, chunk=7, bottleneck=4, design="crossan", side_width=10)
    chunked.load_state_dict(whole.state_dict())
    items = torch.tensor([[3, 9, 17], [30, 2, 39], [5, 5, 11]])
    outs = []
    for tower in (whole, chunked):
        out = tower(items)
        out.pow(2).sum().backward()
        outs.append(out)
    torch.testing.assert_close(outs[0], outs[1])
    for a, b in zip(whole.parameters(), chunked.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_two_modalities_fit_end_to_end_with_each_design() -> None:
    n_items = 60
    rng = np.random.default_rng(0)
    histories = [(rng.integers(n_items) + 7 * np.arange(10)) % n_items for _ in range(150)]
    taps = {m: [rng.standard_normal((n_items, w)).astype(np.float16) for w in ws] for m, ws in WIDTHS.items()}
    for design in ("iisan", "crossan"):
        cfg = CandidatesConfig(model="sidesan", modalities=["text", "image"], media={"image": "unused"},
                               design=design, epochs=2, width=16, n_layers=1, n_heads=2, max_len=8, bottleneck=4,
                               side_width=12, side_chunk=50, batch_size=64, progress=False)
        m = fit_recommender(histories, n_items, cfg, taps).metrics
        assert m["hr@10"] is not None and m["trainable_params"] > 0


def test_design_config_validation() -> None:
    with pytest.raises(ConfigError, match="design"):
        load_candidates_config(None, ["candidates.design=transformer"])
    with pytest.raises(ConfigError, match="combines modalities"):
        load_candidates_config(None, ["candidates.design=iisan"])
    cfg = load_candidates_config(None, ["candidates.design=crossan", "candidates.modalities=[text, image]",
                                        "candidates.media={image: imgs}", "candidates.gates=false"])
    assert (cfg.design, cfg.gates) == ("crossan", False)
