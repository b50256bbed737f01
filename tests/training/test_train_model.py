"""Features, vocabulary, model shapes, decoding and the learning-rate schedule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.config import ModelConfig
from training.evaluate import error_counts
from training.features import CharVocab, LogMel, SpecAugment, pad_features
from training.loop import lr_at
from training.model import CTCModel, greedy_decode


def test_vocab_is_the_normalised_training_text():
    vocab = CharVocab.from_texts(["Hello, World!", "It's 42."])
    assert vocab.chars == tuple(sorted(set("hello world it's forty two")))
    assert len(vocab) == len(vocab.chars) + 1  # the blank
    assert vocab.decode(vocab.encode("It's 42!")) == "it's forty two"
    assert vocab.encode("zebra") == vocab.encode("ebr")  # unknown letters are left out
    assert CharVocab.from_json(vocab.to_json()) == vocab


def test_greedy_decode_merges_repeats_and_drops_blanks():
    ids = torch.tensor([[0, 3, 3, 0, 3, 2, 2, 0, 0, 1]])
    log_probs = torch.nn.functional.one_hot(ids, 5).float().log_softmax(-1)
    assert greedy_decode(log_probs, torch.tensor([10])) == [[3, 3, 2, 1]]
    assert greedy_decode(log_probs, torch.tensor([6])) == [[3, 3, 2]]


def test_logmel_frames_every_10_ms_and_normalised():
    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    feats = LogMel(80)(audio)
    assert feats.shape == (201, 80)
    assert feats.mean(0).abs().max() < 1e-4 and (feats.std(0) - 1).abs().max() < 1e-3
    padded, lengths = pad_features([feats, feats[:50]])
    assert padded.shape == (2, 201, 80) and lengths.tolist() == [201, 50] and padded[1, 50:].abs().sum() == 0


def test_spec_augment_masks_and_is_a_function_of_the_seed():
    feats = torch.randn(3, 300, 80)
    augment = SpecAugment(freq_masks=2, freq_width=15, time_masks=2, time_width=40)
    torch.manual_seed(7)
    a = augment(feats)
    torch.manual_seed(7)
    b = augment(feats)
    assert torch.equal(a, b) and not torch.equal(a, feats)
    assert (a == 0).sum() > (feats == 0).sum()


def test_model_output_lengths_follow_the_subsampling():
    model = CTCModel(ModelConfig(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, subsample_channels=4), 12)
    log_probs, lengths = model(torch.randn(2, 101, 80), torch.tensor([101, 40]))
    assert log_probs.shape == (2, 26, 12) and lengths.tolist() == [26, 10]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 26), atol=1e-5)


def test_error_counts_sum_to_corpus_rates():
    ce, nc, we, nw = error_counts("the cat sat", "the cat sit")
    assert (nc, nw) == (11, 3) and ce == pytest.approx(1) and we == pytest.approx(1)


def test_learning_rate_warms_up_then_decays():
    rates = [lr_at(s, peak=1e-3, warmup=10) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3) == max(rates)
    assert all(a > b for a, b in zip(rates[9:], rates[10:]))
