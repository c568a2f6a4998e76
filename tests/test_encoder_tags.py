"""Encoder loading and mixing, zero-shot tags (cast matching is by face: tests/test_faces.py)."""

from __future__ import annotations

import numpy as np
import pytest

from artwork.encoder import WeightsUnavailable, build_tiny, load_encoder
from artwork.ingest import Ingestor
from artwork.store import EncoderMismatch
from artwork.tagging import ZeroShotTagger, load_vocabulary
from conftest import encode, scene


def test_tiny_encoder_is_seeded_normalised_and_labelled(tiny):
    imgs = [scene(i) for i in range(5)]
    a = tiny.embed_images(imgs, batch_size=2)
    b = build_tiny().embed_images(imgs, batch_size=5)
    assert a.shape == (5, tiny.dim) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # same seed, any batch size: same vectors
    assert not np.allclose(a, build_tiny(seed=1).embed_images(imgs), atol=1e-3)
    assert "TINY" in tiny.label and tiny.encoder_id.startswith("tiny-random-clip/")


def test_missing_pretrained_weights_say_how_to_provide_them(tmp_path):
    with pytest.raises(WeightsUnavailable) as err:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))
    msg = str(err.value)
    assert "--checkpoint PATH" in msg and "cache" in msg and "--download" in msg
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_encoder("ViT-B-32", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="unknown CLIP architecture"):
        load_encoder("ViT-Q-99")


def test_catalog_refuses_a_second_encoder_until_reembedded(catalog, tiny, tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(scene(1)))
    Ingestor(catalog, tiny).upload_files("t1", [tmp_path / "a.jpg"], progress=False)
    other = build_tiny(seed=7)
    with pytest.raises(EncoderMismatch, match="artwork reembed"):
        Ingestor(catalog, other)
    before = catalog.artworks("t1")[0].embedding
    n = Ingestor(catalog, other, reembed=True).reembed_catalog(progress=False)
    assert n == 1 and catalog.encoder_id == other.encoder_id
    after = catalog.artworks("t1")[0]
    assert after.encoder_id == other.encoder_id and not np.allclose(before, after.embedding)
    with pytest.raises(EncoderMismatch):
        Ingestor(catalog, tiny)


def test_zero_shot_tags_are_probabilities_and_stable(tiny):
    vocab = load_vocabulary()
    assert len(vocab.moods) >= 15 and len(vocab.genres) >= 15
    assert {"dark", "suspenseful", "romantic", "funny", "heartwarming", "eerie", "exciting"} <= set(vocab.moods)
    emb = tiny.embed_images([scene(i) for i in range(4)])
    tags = ZeroShotTagger(tiny, vocab).tag(emb)
    again = ZeroShotTagger(build_tiny(), vocab).tag(emb)
    for t, t2 in zip(tags, again):
        for kind, labels in (("moods", vocab.moods), ("genres", vocab.genres)):
            scores = np.array([t[kind][l] for l in labels])
            assert np.all((scores >= 0) & (scores <= 1))
            assert abs(scores.sum() - 1) < 1e-5
            np.testing.assert_allclose(scores, [t2[kind][l] for l in labels], atol=1e-6)
    # different images get different tag distributions
    assert not np.allclose(list(tags[0]["moods"].values()), list(tags[1]["moods"].values()))


def test_prompt_ensemble_averages_templates(tiny):
    vocab = load_vocabulary()
    tagger = ZeroShotTagger(tiny, vocab)
    single = tiny.embed_texts([t.format("dark") for t in vocab.mood_templates]).mean(axis=0)
    single /= np.linalg.norm(single)
    np.testing.assert_allclose(tagger.mood_emb[vocab.moods.index("dark")], single, atol=1e-5)
