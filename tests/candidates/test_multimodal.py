"""The image path from config, content-hashed media caches and the generated multimodal fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ialp.candidates import CandidateGenerator, CandidatesConfig, FeatureFileEncoder, HiddenStateCache, TextEncoder
from ialp.candidates.encoders import media_files
from ialp.candidates.fixture import COLOURS, GENRES, make_multimodal_fixture
from ialp.candidates.generator import build_taps
from ialp.data import load_dataset


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_multimodal_fixture(tmp_path_factory.mktemp("mm"), n_users=40, items_per_class=2, length=6,
                                   image_size=32)


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory: pytest.TempPathFactory) -> TextEncoder:
    from transformers import BertConfig, BertModel, BertTokenizer

    words = [w.lower() for w in GENRES] + ["genres", "night", "river", "story"]
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    return TextEncoder(BertModel(config), BertTokenizer(str(vocab)), name="tiny-bert", max_length=32)


def test_fixture_loads_and_keeps_colour_out_of_the_text(fixture_dir: Path) -> None:
    data = load_dataset(fixture_dir)
    assert data.log.n_items == 32 and data.log.n_users == 40 and len(data.log) == 40 * 6
    texts = " ".join(data.catalog.descriptions).lower()
    assert not any(colour in texts for colour in COLOURS) and any(g.lower() in texts for g in GENRES)
    paths = media_files(fixture_dir / "images", list(data.catalog.item_ids), "image")
    assert all(p is not None and Path(p).is_file() for p in paths)


def test_media_folder_layout_and_errors(tmp_path: Path) -> None:
    (tmp_path / "7.jpg").write_bytes(b"x")
    (tmp_path / "9.png").write_bytes(b"x")
    assert media_files(tmp_path, [7, 8, 9], "image") == [str(tmp_path / "7.jpg"), None, str(tmp_path / "9.png")]
    with pytest.raises(FileNotFoundError, match="no image file"):
        media_files(tmp_path, [1, 2], "image")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        media_files(tmp_path / "nope", [1], "image")


def test_feature_files_are_cached_by_content_not_by_name(tmp_path: Path) -> None:
    path = tmp_path / "audio.npy"
    np.save(path, np.ones((3, 4), dtype=np.float32))
    cache = HiddenStateCache(tmp_path / "cache")
    first = cache.get(FeatureFileEncoder("audio", path), [0, 1, 2], [0])[0]
    np.save(path, np.full((3, 4), 2.0, dtype=np.float32))  # replaced under the same name
    second = cache.get(FeatureFileEncoder("audio", path), [0, 1, 2], [0])[0]
    assert float(first[0, 0]) == 1.0 and float(second[0, 0]) == 2.0
    per_item = tmp_path / "items"
    per_item.mkdir()
    np.save(per_item / "5.npy", np.ones(4, dtype=np.float32))
    enc = FeatureFileEncoder("audio")
    files = media_files(per_item, [5, 6], "audio")
    key = cache.key(enc, files)
    np.save(per_item / "5.npy", np.zeros(4, dtype=np.float32))
    assert cache.key(enc, files) != key
    np.testing.assert_array_equal(enc.encode(files)[0], np.zeros((2, 4)))  # item 6 has no file: zeros


def test_text_and_image_fit_end_to_end_from_config(fixture_dir: Path, tiny_text: TextEncoder,
                                                   tmp_path: Path) -> None:
    cfg = CandidatesConfig(model="sidesan", modalities=["text", "image"], media={"image": str(fixture_dir / "images")},
                           image_size=32, layer_group=4, design="crossan", epochs=1, width=16, n_layers=1,
                           n_heads=2, max_len=6, bottleneck=4, side_width=16, batch_size=64, progress=False,
                           cache_dir=str(tmp_path))
    data = load_dataset(fixture_dir)
    taps = build_taps(data.catalog, cfg, {"text": tiny_text})
    assert [len(t) for t in taps.values()] == [1, 3]  # text: 3 layers, keep every 4th from the top; image: 9
    assert taps["image"][-1].shape == (32, 1280)  # EfficientNet-Lite0's head, pooled
    gen = CandidateGenerator(config=cfg).fit(data, encoders={"text": tiny_text})
    assert gen.item_table is not None and gen.item_table.shape == (32, 16)
    assert gen.metrics["hr@10"] is not None and gen.metrics["trainable_params"] > 0
    # the image states are cached by the images' content: a second build reads the same files
    again = build_taps(data.catalog, cfg, {"text": tiny_text})
    np.testing.assert_array_equal(np.asarray(again["image"][0]), np.asarray(taps["image"][0]))
