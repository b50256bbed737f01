"""A compact CTC acoustic model: 4x conv subsampling, a torchaudio Conformer, a linear head."""
from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import Conformer

from training.config import ModelConfig


def _conv_out(n: int) -> int:
    return (n - 1) // 2 + 1  # kernel 3, stride 2, padding 1


class CTCModel(nn.Module):
    def __init__(self, config: ModelConfig, vocab_size: int):
        super().__init__()
        ch = config.subsample_channels
        self.subsample = nn.Sequential(nn.Conv2d(1, ch, 3, stride=2, padding=1), nn.ReLU(),
                                       nn.Conv2d(ch, ch, 3, stride=2, padding=1), nn.ReLU())
        self.project = nn.Linear(ch * _conv_out(_conv_out(config.n_mels)), config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = Conformer(input_dim=config.d_model, num_heads=config.num_heads, ffn_dim=config.ffn_dim,
                                 num_layers=config.num_layers, depthwise_conv_kernel_size=config.conv_kernel,
                                 dropout=config.dropout)
        self.head = nn.Linear(config.d_model, vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (batch, frames, n_mels) → log-probabilities (batch, frames / 4, vocab) and their lengths."""
        x = self.subsample(feats.unsqueeze(1))  # (batch, ch, frames/4, mels/4)
        b, c, t, f = x.shape
        x = self.dropout(self.project(x.transpose(1, 2).reshape(b, t, c * f)))
        out_lengths = _conv_out(_conv_out(lengths)).clamp(min=1, max=t)
        x, out_lengths = self.encoder(x, out_lengths)
        return self.head(x).float().log_softmax(dim=-1), out_lengths


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance: argmax per frame, repeats merged, blanks (0) removed."""
    best = log_probs.argmax(dim=-1).cpu()
    out = []
    for row, n in zip(best, lengths.cpu().tolist()):
        ids = torch.unique_consecutive(row[:n]).tolist()
        out.append([i for i in ids if i != 0])
    return out
