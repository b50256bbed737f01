"""Features and labels: log-mel filterbanks (torchaudio), SpecAugment masking, a character vocabulary."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import torch
import torchaudio

from corpus.schema import SAMPLE_RATE
from corpus.text import normalize_text

BLANK = "<blank>"
HOP = 160  # 10 ms at 16 kHz
WINDOW = 400  # 25 ms


@dataclass(frozen=True)
class CharVocab:
    """Index 0 is the CTC blank; then the characters of the normalised training text."""

    chars: tuple[str, ...]

    @classmethod
    def from_texts(cls, texts) -> "CharVocab":
        seen = set()
        for text in texts:
            seen.update(normalize_text(text or ""))
        if not seen:
            raise ValueError("no characters in the training text: cannot build a vocabulary")
        return cls(tuple(sorted(seen)))

    def __len__(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> list[int]:
        """Ids of the normalised text; characters outside the vocabulary are left out."""
        index = self._index
        return [index[c] for c in normalize_text(text or "") if c in index]

    def decode(self, ids) -> str:
        return "".join(self.chars[i - 1] for i in ids if 0 < i <= len(self.chars))

    @cached_property
    def _index(self) -> dict[str, int]:
        return {c: i + 1 for i, c in enumerate(self.chars)}

    def to_json(self) -> str:
        return json.dumps({"blank": BLANK, "chars": list(self.chars)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "CharVocab":
        return cls(tuple(json.loads(text)["chars"]))


class LogMel:
    """80 (or ``n_mels``) log-mel bands every 10 ms over 25 ms windows, normalised per utterance."""

    def __init__(self, n_mels: int = 80):
        self.n_mels = n_mels
        self._mel = torchaudio.transforms.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=512, win_length=WINDOW,
                                                         hop_length=HOP, n_mels=n_mels)

    def __call__(self, audio) -> torch.Tensor:
        """(frames, n_mels) float32 for 16 kHz mono float audio (numpy or tensor)."""
        wave = torch.as_tensor(audio, dtype=torch.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected mono audio (1-D), got shape {tuple(wave.shape)}")
        feats = (self._mel(wave) + 1e-6).log().T  # (frames, n_mels)
        mean = feats.mean(dim=0, keepdim=True)
        std = feats.std(dim=0, keepdim=True) if feats.shape[0] > 1 else torch.ones_like(mean)
        return (feats - mean) / (std + 1e-5)


def pad_features(feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, max_frames, n_mels) zero-padded, and the frame counts."""
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    out = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
    for i, f in enumerate(feats):
        out[i, : f.shape[0]] = f
    return out, lengths


class SpecAugment(torch.nn.Module):
    """Frequency and time masks (torchaudio), a different draw for every utterance of the batch.

    Randomness comes from torch's global generator, which the training loop seeds per step.
    """

    def __init__(self, *, freq_masks: int, freq_width: int, time_masks: int, time_width: int):
        super().__init__()
        self.freq = torchaudio.transforms.FrequencyMasking(freq_mask_param=freq_width, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(time_mask_param=time_width, iid_masks=True)
        self.freq_masks, self.time_masks = freq_masks, time_masks

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: (batch, frames, n_mels); masked values are 0 (the per-utterance mean)."""
        x = feats.transpose(1, 2)  # (batch, n_mels, frames)
        for _ in range(self.freq_masks):
            x = self.freq(x)
        for _ in range(self.time_masks):
            x = self.time(x)
        return x.transpose(1, 2)
