"""ialp.candidates on tiny randomly initialised encoders (no downloads)."""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import ialp  # noqa: F401  (registers the ids)
from ialp.candidates import (
    BottleneckAdapter,
    CandidateGenerator,
    CandidatesConfig,
    FeatureFileEncoder,
    HiddenStateCache,
    ImageEncoder,
    ModalityExperts,
    ModalitySideNetwork,
    TextEncoder,
    rank_metrics,
    select_taps,
)
from ialp.candidates.cli import add_candidates_parser
from ialp.candidates.config import ConfigError, load_candidates_config
from ialp.candidates.generator import TopOnePolicy, build_model, fit_recommender, trainable_parameters
from ialp.candidates.sequential import SideItemTower, in_batch_loss, leave_one_out
from ialp.candidates.tracker import SessionCandidates

MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens"
WORDS = ["the", "a", "movie", "film", "comedy", "drama", "space", "love", "war", "dog", "cat", "story", "night"]


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    return TextEncoder(BertModel(config), BertTokenizer(str(vocab)), name="tiny-bert", max_length=16, batch_size=4)


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 8))) for _ in range(n)]


def test_text_encoder_layers_and_masked_mean(tiny_text: TextEncoder) -> None:
    states = tiny_text.encode(["the movie", "a love story the war night"])
    assert len(states) == 4 and all(s.shape == (2, 16) for s in states)
    alone = tiny_text.encode(["the movie"], layers=[-1])[0]
    np.testing.assert_allclose(alone[0], states[-1][0], atol=1e-5)  # padding in a batch does not change the mean


def test_cache_matches_uncached_and_stores_only_taps(tiny_text: TextEncoder, tmp_path: Path) -> None:
    texts = _texts(9)
    taps = select_taps(tiny_text.n_layers, group_size=2)
    assert taps == (1, 3)
    cache = HiddenStateCache(tmp_path)
    cached = cache.get(tiny_text, texts, taps)
    direct = tiny_text.encode(texts, taps)
    for c, d in zip(cached, direct, strict=True):
        assert isinstance(c, np.memmap) and c.dtype == np.float16
        np.testing.assert_allclose(np.asarray(c, np.float32), d, rtol=1e-2, atol=1e-3)
    files = sorted(p.name for p in (tmp_path / cache.key(tiny_text, texts)).glob("layer*.npy"))
    assert files == ["layer001.npy", "layer003.npy"]
    again = cache.get(tiny_text, texts, taps)  # a hit: same arrays from disk
    np.testing.assert_array_equal(np.asarray(again[0]), np.asarray(cached[0]))


def test_no_gradient_reaches_frozen_backbone(tiny_text: TextEncoder, tmp_path: Path) -> None:
    texts = _texts(30)
    taps = HiddenStateCache(tmp_path).get(tiny_text, texts, range(tiny_text.n_layers))
    model = build_model(CandidatesConfig(model="sidesan", width=16, n_heads=2, max_len=8, bottleneck=4), 30,
                        {"text": taps})
    seq = torch.randint(0, 30, (4, 9))
    in_batch_loss(model, seq[:, :-1], seq[:, 1:], None).backward()
    assert all(not p.requires_grad and p.grad is None for p in tiny_text.model.parameters())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.enable_grad():
        assert not torch.from_numpy(tiny_text.encode(["the movie"])[0]).requires_grad


def test_adapters_and_gates_start_near_identity() -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    assert torch.equal(BottleneckAdapter(8, 2)(x), x)
    taps = [torch.randn(5, 8) for _ in range(4)]
    side = ModalitySideNetwork([8, 8, 8, 8], bottleneck=2)
    assert torch.all(side.gates() < 0.05)
    assert torch.allclose(side(taps), taps[-1], atol=0.1 * taps[-1].abs().mean().item())
    mixed = ModalitySideNetwork([4, 6, 8], side_width=8)  # per-tap projections where widths differ
    assert mixed([torch.randn(5, 4), torch.randn(5, 6), torch.randn(5, 8)]).shape == (5, 8)
    one = ModalityExperts(1, 8, fusion="moe")
    assert torch.allclose(one([x]), x, atol=1e-6)
    moe, concat = ModalityExperts(2, 8, "moe"), ModalityExperts(2, 8, "concat")
    concat.load_state_dict(moe.state_dict(), strict=False)
    assert torch.allclose(moe([x, 2 * x]), concat([x, 2 * x]), atol=1e-6)
    assert torch.allclose(moe.modality_weights(), torch.ones(2))
    assert torch.allclose(moe.routing(torch.cat([x, x], 1)).sum(-1), torch.ones(5))


def test_rank_metrics_on_hand_built_scores() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.5],
                       [0.9, 0.8, 0.1, 0.5],
                       [0.1, 0.2, 0.3, 0.4]])
    targets = np.array([0, 1, 0])
    # user 0: rank 0; user 1: rank 1 (item 0 above), but with item 0 excluded rank 0; user 2: rank 3.
    m = rank_metrics(scores, targets, k=2)
    assert m["hr@2"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1.0 + 1 / np.log2(3)) / 3)
    m = rank_metrics(scores, targets, exclude=[[], [0], [1, 2, 3]], k=1)
    assert m["hr@1"] == pytest.approx(1.0) and m["ndcg@1"] == pytest.approx(1.0)
    tied = rank_metrics(np.zeros((1, 3)), np.array([1]), k=2)  # ties count against the target
    assert tied["hr@2"] == 0.0


def _rule_histories(n_users: int, n_items: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """Each user walks the catalogue: next item = (item + 7) mod n_items from a random start."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(n_items) + 7 * np.arange(length)) % n_items for _ in range(n_users)]


FAST = {"width": 32, "n_layers": 1, "n_heads": 2, "max_len": 8, "dropout": 0.0, "batch_size": 64,
        "lr": 5e-3, "progress": False}


@pytest.mark.parametrize("model", ["sasrec-id", "sidesan"])
def test_learns_synthetic_next_item_rule(model: str) -> None:
    n_items = 100
    histories = _rule_histories(300, n_items, 12)
    taps = None
    if model == "sidesan":  # item "content": random features at three layers, items distinguishable
        rng = np.random.default_rng(1)
        taps = {"text": [rng.standard_normal((n_items, 24)).astype(np.float16) for _ in range(3)]}
    cfg = CandidatesConfig(model=model, epochs=15 if model == "sidesan" else 10, bottleneck=8, **FAST)
    metrics = fit_recommender(histories, n_items, cfg, taps).metrics
    assert metrics["hr@10"] > 0.6, metrics  # random ranking: about 0.1
    assert metrics["trainable_params"] > 0 and metrics["s_per_epoch"] > 0


def test_early_stopping_keeps_the_best_validation_epoch() -> None:
    histories = _rule_histories(200, 60, 10)
    cfg = CandidatesConfig(model="sasrec-id", epochs=40, patience=2, **{**FAST, "lr": 2e-2})
    m = fit_recommender(histories, 60, cfg).metrics
    curve = m["valid_ndcg_curve"]
    assert len(curve) == m["epochs_trained"] and m["best_epoch"] == int(np.argmax(curve)) + 1
    assert len(curve) == 40 or len(curve) - m["best_epoch"] == 2  # stopped two epochs after the best
    assert m["valid_ndcg@10"] == pytest.approx(max(curve), abs=1e-9)  # the best epoch's weights were restored
    assert m["hr@10"] is not None


@pytest.fixture(scope="module")
def synthetic_generator() -> CandidateGenerator:
    histories = _rule_histories(200, 200, 10)
    cfg = CandidatesConfig(model="sasrec-id", epochs=2, k=5, **FAST)
    return CandidateGenerator(config=cfg).fit(histories=histories, n_items=200)


def test_generator_candidates_exclude_and_roundtrip(synthetic_generator: CandidateGenerator, tmp_path: Path) -> None:
    gen = synthetic_generator
    hist = np.array([[-1, -1, 3, 10], [-1, -1, -1, -1]])
    cands = gen.candidates(hist, k=6, exclude=[[17], []])
    assert cands.shape == (2, 6) and cands.dtype == np.int64
    assert not set(cands[0]) & {3, 10, 17}
    scores = gen.scores(hist)
    assert np.all(np.diff(scores[0, cands[0]]) <= 0)  # best first
    np.testing.assert_array_equal(gen.log_popularity[cands[1]], np.sort(gen.log_popularity)[::-1][:6])  # cold start
    loaded = CandidateGenerator.load(gen.save(tmp_path / "gen.pt"))
    np.testing.assert_array_equal(loaded.candidates(hist, k=6, exclude=[[17], []]), cands)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(gen)).candidates(hist), gen.candidates(hist))


def test_generator_user_vectors_ignore_left_padding(synthetic_generator: CandidateGenerator) -> None:
    gen = synthetic_generator
    assert gen.encoder is not None and gen.item_table is not None
    short = np.array([[-1, -1, 3, 10], [-1, 7, 8, 9]])
    full = np.full((2, gen.encoder.max_len), -1)
    full[:, -4:] = short
    with torch.no_grad():  # the encoder over the full max_len window, as trained
        table = torch.from_numpy(gen.item_table)
        states = gen.encoder(table[torch.from_numpy(full).clamp_min(0)], torch.from_numpy(full < 0))[:, -1]
    expected = torch.nn.functional.normalize(states, dim=-1).numpy()
    np.testing.assert_allclose(gen.user_vectors(short), expected, atol=1e-5)


def test_generator_drives_environment(synthetic_generator: CandidateGenerator) -> None:
    env = gym.make("ialp/Synthetic-v0", n_items=200, candidates=synthetic_generator)
    assert env.action_space == gym.spaces.Discrete(5)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape[0] == 5
    policy = TopOnePolicy()
    for _ in range(5):
        action, _ = policy.predict(obs)
        obs, _reward, terminated, truncated, _ = env.step(int(action[0]))
        if terminated or truncated:
            break
    env.close()
    with pytest.raises(ValueError, match="items"):
        gym.make("ialp/Synthetic-v0", n_items=300, candidates=synthetic_generator).reset(seed=0)


def test_image_encoder_pools_stem_stages_head() -> None:
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    enc = ImageEncoder(EfficientNet.from_name("efficientnet-lite0"), batch_size=2)
    assert enc.layer_widths == (32, 16, 24, 40, 80, 112, 192, 320, 1280)
    images = [np.random.default_rng(i).standard_normal((3, 32, 32)).astype(np.float32) for i in range(3)]
    states = enc.encode(images, layers=[0, 4, 8])
    assert [s.shape for s in states] == [(3, 32), (3, 80), (3, 1280)]
    assert np.allclose(enc.encode(images[:1], layers=[4])[0], states[1][:1], atol=1e-4)
    assert all(not p.requires_grad for p in enc.model.parameters())


def test_feature_file_encoders(tmp_path: Path) -> None:
    table = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "audio.npy", table)
    audio = FeatureFileEncoder("audio", tmp_path / "audio.npy")
    assert audio.layer_widths == (4, 4, 4)
    np.testing.assert_array_equal(audio.encode([1, 0], layers=[2])[0], table[[1, 0], 2])
    frames = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)  # 5 frames of width 6
    np.save(tmp_path / "v0.npy", frames)
    video = FeatureFileEncoder("video")
    (out,) = video.encode([str(tmp_path / "v0.npy")])
    np.testing.assert_allclose(out[0], frames.mean(0), rtol=1e-6)


def test_config_and_cli_parser(tmp_path: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("candidates: {model: sidesan, modalities: [text], k: 20}\n")
    cfg = load_candidates_config(cfg_file, ["candidates.epochs=2"])
    assert (cfg.k, cfg.epochs) == (20, 2)
    with pytest.raises(ConfigError, match=r"candidates\.model"):
        load_candidates_config(None, ["candidates.model=bert4rec"])
    with pytest.raises(ConfigError, match="media"):
        load_candidates_config(None, ["candidates.modalities=[text, image]"])
    parser = argparse.ArgumentParser()
    add_candidates_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["candidates", "eval", "--data-dir", "x", "--json", "--seeds", "2"])
    assert args.seeds == 2 and args.json and callable(args.func)


def test_leave_one_out_split_on_movielens() -> None:
    from ialp.data import load_movielens

    data = load_movielens(MOVIELENS / "ml-latest-small")  # fails (not skips) when the data are missing
    histories = data.log.user_histories()
    split = leave_one_out(histories, data.log.n_items)
    assert len(split.test) == len(histories)
    seq, target = split.test[0]
    assert target == histories[0][-1] and np.array_equal(seq, histories[0][:-1])
    assert split.valid[0][1] == histories[0][-2] and len(split.train[0]) == len(histories[0]) - 2


def test_candidates_eval_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    from ialp.cli import main

    tiny = [f"candidates.{t}" for t in ("epochs=3", "patience=1", "width=16", "n_layers=1", "n_heads=1", "max_len=10",
                                        "batch_size=256")]
    assert main(["candidates", "eval", "--data-dir", str(MOVIELENS / "ml-latest-small"), "--json", "--seeds", "2",
                 "--models", "popularity,sasrec-id", *(a for t in tiny for a in ("--set", t))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"popularity", "sasrec-id"}
    for row in result.values():
        assert {"hr@10", "ndcg@10", "trainable_params", "peak_mem_mb", "tensor_peak_mb", "s_per_epoch"} <= set(row)
        assert 0.0 < row["ndcg@10"] <= row["hr@10"] < 1.0
    pop, ids = result["popularity"], result["sasrec-id"]
    assert (pop["seeds"], pop["trainable_params"], ids["seeds"]) == (1, 0, 2)
    assert ids["trainable_params"] > 9742 * 16 and ids["s_per_epoch"] > 0 and 1 <= ids["best_epoch"] <= 3
    assert ids["tensor_peak_mb"] > 9742 * 16 * 4 * 3 / 2**20  # at least the embedding's gradient and Adam's 2 moments


def test_side_item_tower_reads_memmapped_rows(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float16)
    np.save(tmp_path / "t.npy", arr)
    tower = SideItemTower({"text": [np.load(tmp_path / "t.npy", mmap_mode="r")]}, 6, bottleneck=2)
    assert tower(torch.tensor([3, 1])).shape == (2, 6)
    assert not any("taps" in k for k in tower.state_dict())


def test_finetune_text_trains_the_encoder_itself(tiny_text: TextEncoder, tmp_path: Path) -> None:
    texts = _texts(30)
    cfg = CandidatesConfig(model="finetune-text", width=16, n_heads=2, max_len=8, bottleneck=4, text_chunk=7)
    model = build_model(cfg, 30, None, texts, tiny_text)
    seq = torch.randint(0, 30, (4, 9))
    in_batch_loss(model, seq[:, :-1], seq[:, 1:], None).backward()
    backbone = list(model.tower.backbone.parameters())  # type: ignore[union-attr]
    assert all(p.requires_grad for p in backbone)
    assert sum(float(p.grad.abs().sum()) for p in backbone if p.grad is not None) > 0  # gradients reach it
    assert all(not p.requires_grad for p in tiny_text.model.parameters())  # the shared encoder stays frozen
    taps = HiddenStateCache(tmp_path).get(tiny_text, texts, range(tiny_text.n_layers))
    side = build_model(dataclasses.replace(cfg, model="sidesan"), 30, {"text": taps})
    assert trainable_parameters(model) > trainable_parameters(side) > 0
    # chunked, length-sorted encoding gives each item its own vector, in order
    model.eval()
    with torch.no_grad():
        one = model.tower(torch.tensor([5]))  # type: ignore[operator]
        many = model.tower(torch.tensor([[3, 5], [29, 0]]))  # type: ignore[operator]
    assert many.shape == (2, 2, 16) and torch.allclose(many[0, 1], one[0], atol=1e-5)


def test_finetune_text_cut_short_is_measured_not_scored(tiny_text: TextEncoder) -> None:
    histories = _rule_histories(40, 30, 8)
    cfg = CandidatesConfig(model="finetune-text", epochs=2, max_steps=1, text_chunk=16, **{**FAST, "batch_size": 8})
    before = copy.deepcopy(tiny_text.model.state_dict())
    result = fit_recommender(histories, 30, cfg, texts=_texts(30), text_encoder=tiny_text)
    m = result.metrics
    assert m["hr@10"] is None and m["ndcg@10"] is None and m["batches_trained"] == 1
    assert m["s_per_epoch_extrapolated"] and m["s_per_epoch"] > 0 and m["trainable_params"] > 0
    assert result.model is not None
    trained = result.model.tower.backbone.state_dict()  # type: ignore[union-attr]
    assert any(not torch.equal(trained[k], v) for k, v in before.items())  # one step moved the encoder's weights
    assert all(torch.equal(tiny_text.model.state_dict()[k], v) for k, v in before.items())


RUN_TINY = ["llm.backend=oracle", f"env.kwargs={{data_dir: {MOVIELENS / 'ml-latest-small'}}}", "distill.queries=30",
            "reward.epochs=5", "reward.hidden=8", "agent.net_arch=[8]", "agent.num_envs=4",
            "pretrain.total_timesteps=64", "online.total_timesteps=64", "eval.users=4", "eval.seeds=[0]",
            "methods=[random, oracle-greedy, a2c-scratch, ialp]"]
CANDIDATES = ("candidates={model: sasrec-id, k: 10, epochs: 1, width: 16, n_layers: 1, n_heads: 1, max_len: 10, "
              "batch_size: 256, progress: false, refresh: 2, pool: 15}")


def test_run_with_candidates_section_trains_stores_and_reuses_the_generator(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ialp.agents.distill import build_world
    from ialp.cli import main
    from ialp.config import load_config

    config = Path(__file__).resolve().parents[2] / "configs" / "movielens.yaml"
    methods = "methods=[random, candidates-top1, a2c-scratch, ialp]"
    args = ["run", str(config), "--out", str(tmp_path),
            *(a for s in (*RUN_TINY, CANDIDATES, methods) for a in ("--set", s))]
    assert main(args) == 0
    folder = tmp_path / "candidates"
    with open(tmp_path / "results.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f) if r["setting"] == "free" and r["eval_mode"] == "sample"}
    assert set(rows) == {"random", "candidates-top1", "a2c-scratch", "ialp"}
    assert float(rows["candidates-top1"]["length"]) >= 1.0  # the generator's top-1 was played as a policy
    metrics = json.loads((folder / "metrics.json").read_text())
    assert 0.0 <= metrics["hr@10"] <= 1.0 and 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"]
    gen = CandidateGenerator.load(folder / "generator.pt")
    assert gen.k == 10 and gen.item_table is not None
    assert "Candidate generator `sasrec-id`" in (tmp_path / "summary.md").read_text()
    # the environments of the run act on the generator's top 10
    cfg = load_config(tmp_path / "config.yaml")
    world = build_world(cfg, candidates_dir=folder)
    assert isinstance(world.env_kwargs["candidates"], CandidateGenerator)
    for venv in (world.target_env(2, 0), world.offline_env(2, 0)):
        assert venv.action_space == gym.spaces.Discrete(10) and venv.reset()["candidates"].shape[:2] == (2, 10)
        tracker = venv.face.candidate_tracker()  # per-session pooled candidates, as configured
        assert isinstance(tracker, SessionCandidates) and (tracker.refresh, tracker.pool_size) == (2, 15)
    # a rerun loads the stored generator (same file, not retrained) and skips the finished stages
    stamp = (folder / "generator.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 0
    assert (folder / "generator.pt").stat().st_mtime_ns == stamp


def test_experiment_config_candidates_section() -> None:
    from ialp.config import ConfigError, load_config
    from ialp.experiment import load_experiment

    assert load_config().candidates is None  # default: no candidate generator
    served = load_config(Path(__file__).resolve().parents[2] / "configs" / "movielens_candidates.yaml").candidates
    assert served is not None and (served.refresh, served.pool, served.k) == (10, 64, 50)  # the pooled, cached env
    cfg = load_config(overrides=["candidates={model: sidesan, modalities: [text], k: 50}", "methods=[random]"])
    cc = cfg.candidates
    assert cc is not None and (cc.model, cc.k) == ("sidesan", 50)
    with pytest.raises(ConfigError, match=r"candidates\.model"):
        load_config(overrides=["candidates={model: bert4rec}"])
    with pytest.raises(ConfigError, match="whole catalogue"):
        load_experiment(overrides=["candidates={k: 5}", "methods=[random, ucb]"])
    with pytest.raises(ConfigError, match="need a candidate generator"):
        load_experiment(overrides=["methods=[random, candidates-top1]"])
    with pytest.raises(ConfigError, match="both set"):
        load_config(overrides=["candidates={k: 5}", "env.kwargs={candidates: 5}", "methods=[random]"])
