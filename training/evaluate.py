"""Greedy CTC decoding and per-domain error rates on held-out splits."""
from __future__ import annotations

from contextlib import nullcontext

import torch

from corpus.text import char_error_rate, normalize_text, word_error_rate
from training.dataset import EvalSet, collate
from training.features import CharVocab, LogMel
from training.model import greedy_decode


def ctc_losses(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: torch.Tensor,
               target_lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance CTC loss divided by the label length (an empty label counts as length 1)."""
    losses = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths, blank=0,
                                          reduction="none", zero_infinity=True)
    return losses / target_lengths.clamp(min=1).to(losses.dtype)


def error_counts(reference: str, hypothesis: str) -> tuple[float, int, float, int]:
    """(char errors, reference chars, word errors, reference words) of one utterance.

    The rates of :mod:`corpus.text` times the normalised reference's length, so summing over a
    set and dividing gives the corpus-level CER and WER (as jiwer computes over a list).
    """
    ref = normalize_text(reference)
    n_chars, n_words = len(ref), len(ref.split())
    return (char_error_rate(reference, hypothesis) * n_chars, n_chars,
            word_error_rate(reference, hypothesis) * n_words, n_words)


@torch.no_grad()
def evaluate(model, sets: list[EvalSet], *, vocab: CharVocab, logmel: LogMel, device: torch.device,
             batch_seconds: float, autocast=nullcontext) -> list[dict]:
    """One row per (domain, split): samples, seconds, mean loss, CER, WER and an example.

    ``autocast`` makes the context the forward pass runs in (mixed precision on CUDA).
    """
    was_training = model.training
    model.eval()
    rows = []
    try:
        for eval_set in sets:
            losses, chars, char_errors, words, word_errors = [], 0, 0.0, 0, 0.0
            example = None
            for items in eval_set.batches(batch_seconds):
                batch = collate(items, vocab, logmel)
                with autocast():
                    log_probs, out_lengths = model(batch["feats"].to(device), batch["feat_lengths"].to(device))
                losses.extend(ctc_losses(log_probs, out_lengths, batch["targets"].to(device),
                                         batch["target_lengths"].to(device)).tolist())
                for text, ids in zip(batch["texts"], greedy_decode(log_probs, out_lengths)):
                    hypothesis = vocab.decode(ids)
                    ce, nc, we, nw = error_counts(text, hypothesis)
                    char_errors, chars, word_errors, words = char_errors + ce, chars + nc, word_errors + we, words + nw
                    if example is None:
                        example = {"reference": normalize_text(text), "hypothesis": hypothesis}
            rows.append({
                "domain": eval_set.domain, "split": eval_set.split, "samples": len(eval_set.items),
                "seconds": eval_set.seconds,
                "loss": sum(losses) / len(losses) if losses else None,
                "cer": char_errors / chars if chars else None,
                "wer": word_errors / words if words else None,
                "example": example,
            })
    finally:
        model.train(was_training)
    return rows
