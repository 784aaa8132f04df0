"""Show, Attend and Tell (Xu et al. 2015), soft attention.

Reads top to bottom: config → Attention → Decoder → loss. The encoder that turns
images into grid features lives in ``encoder.py``; this file only sees the grid
``(B, P, D)``: B images, P = grid cells, D = channels.

The layer names (``encoder_att``, ``decoder_att``, ``full_att``, ``init_h``,
``init_c``, ``f_beta``, ``decode_step``, ``embedding``, ``fc``) follow the widely
used PyTorch implementations, so state_dicts can be exchanged with them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the decoder (saved in every checkpoint)."""

    vocab_size: int
    encoder_dim: int = 1280  # D: channels of the encoder's grid
    embed_dim: int = 512
    attention_dim: int = 512
    decoder_dim: int = 512
    dropout: float = 0.5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "encoder_dim", "embed_dim", "attention_dim", "decoder_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive int, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Attention(nn.Module):
    """Additive (Bahdanau) attention over the P grid cells."""

    def __init__(self, encoder_dim: int, decoder_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.encoder_att = nn.Linear(encoder_dim, attention_dim)
        self.decoder_att = nn.Linear(decoder_dim, attention_dim)
        self.full_att = nn.Linear(attention_dim, 1)

    def forward(self, features: Tensor, projected: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """features (N, P, D), projected = encoder_att(features) (N, P, A), h (N, H).

        Returns the context (N, D) and the attention weights alpha (N, P).
        """
        att = projected + self.decoder_att(h).unsqueeze(1)  # (N, P, A)
        scores = self.full_att(F.relu(att)).squeeze(2)  # (N, P)
        alpha = scores.softmax(dim=1)  # (N, P)
        context = (features * alpha.unsqueeze(2)).sum(dim=1)  # (N, D)
        return context, alpha


@dataclass
class DecoderState:
    """What the LSTM carries from one step to the next, for N hypotheses."""

    h: Tensor  # (N, H)
    c: Tensor  # (N, H)

    def select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` of the state (beam search reorders hypotheses)."""
        return DecoderState(self.h.index_select(0, index), self.c.index_select(0, index))


class Decoder(nn.Module):
    """LSTM decoder with soft attention and a β gate on the context."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.attention = Attention(c.encoder_dim, c.decoder_dim, c.attention_dim)
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        self.dropout = nn.Dropout(p=c.dropout)
        self.decode_step = nn.LSTMCell(c.embed_dim + c.encoder_dim, c.decoder_dim)
        self.init_h = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.init_c = nn.Linear(c.encoder_dim, c.decoder_dim)
        self.f_beta = nn.Linear(c.decoder_dim, c.encoder_dim)
        self.fc = nn.Linear(c.decoder_dim, c.vocab_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.fc.weight, -0.1, 0.1)
        nn.init.zeros_(self.fc.bias)

    # -- pieces used by both training and search ---------------------------------

    def init_state(self, features: Tensor) -> DecoderState:
        """Initial h, c from the mean feature. features (N, P, D)."""
        mean = features.mean(dim=1)  # (N, D)
        return DecoderState(h=self.init_h(mean), c=self.init_c(mean))  # (N, H) each

    def project(self, features: Tensor) -> Tensor:
        """encoder_att(features), computed once per image, reused at every step."""
        projected: Tensor = self.attention.encoder_att(features)  # (N, P, A)
        return projected

    def step(
        self, features: Tensor, projected: Tensor, tokens: Tensor, state: DecoderState
    ) -> tuple[Tensor, Tensor, DecoderState]:
        """One decoding step for N hypotheses.

        features (N, P, D), projected (N, P, A), tokens (N,) the previous words.
        Returns logits (N, V), alpha (N, P) and the new state.
        """
        context, alpha = self.attention(features, projected, state.h)  # (N, D), (N, P)
        gate = torch.sigmoid(self.f_beta(state.h))  # (N, D)
        x = torch.cat([self.embedding(tokens), gate * context], dim=1)  # (N, E + D)
        h, c = self.decode_step(x, (state.h, state.c))  # (N, H) each
        logits = self.fc(self.dropout(h))  # (N, V)
        return logits, alpha, DecoderState(h, c)

    # -- training -----------------------------------------------------------------

    def forward(self, features: Tensor, captions: Tensor, pad_id: int = 0) -> tuple[Tensor, Tensor]:
        """Teacher forcing. features (B, P, D); captions (B, T) = <start> w1 .. wn <end> <pad>..

        Returns logits (B, T-1, V) predicting captions[:, 1:], and alphas (B, T-1, P);
        both are zero where the target is padding. As in the reference
        implementation, captions run longest first and each step decodes only the
        captions that still have a word to predict (about 40% less work).
        """
        batch, steps = captions.size(0), captions.size(1) - 1
        lengths = captions.ne(pad_id).sum(dim=1)  # (B,) with <start> and <end>
        order = lengths.argsort(descending=True, stable=True)  # (B,)
        features, captions, lengths = features[order], captions[order], lengths[order]
        projected = self.project(features)  # (B, P, A)
        state = self.init_state(features)
        all_logits, all_alphas = [], []
        for t in range(steps):
            n = int(lengths.gt(t + 1).sum())  # rows whose target t+1 is a real token
            if n == 0:
                break
            state = DecoderState(state.h[:n], state.c[:n])
            logits, alpha, state = self.step(features[:n], projected[:n], captions[:n, t], state)
            all_logits.append(F.pad(logits, (0, 0, 0, batch - n)))  # (B, V)
            all_alphas.append(F.pad(alpha, (0, 0, 0, batch - n)))  # (B, P)
        logits_out = torch.stack(all_logits, dim=1)  # (B, t, V), t <= T-1
        alphas_out = torch.stack(all_alphas, dim=1)  # (B, t, P)
        if logits_out.size(1) < steps:
            logits_out = F.pad(logits_out, (0, 0, 0, steps - logits_out.size(1)))
            alphas_out = F.pad(alphas_out, (0, 0, 0, steps - alphas_out.size(1)))
        inverse = order.argsort()
        return logits_out[inverse], alphas_out[inverse]


def caption_loss(
    logits: Tensor,
    alphas: Tensor,
    targets: Tensor,
    *,
    pad_id: int,
    alpha_c: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over real tokens + doubly stochastic attention regularisation.

    logits (B, T, V), alphas (B, T, P), targets (B, T) (the caption shifted left).
    The regulariser λ · Σ_p (1 − Σ_t α_tp)² pushes the model to look at every cell
    about once over the caption; only real (non-pad) steps count in Σ_t.
    Returns (total loss, cross-entropy alone) — both averaged as the paper's code does:
    CE per real token, the regulariser per caption.
    """
    mask = targets.ne(pad_id)  # (B, T)
    ce = F.cross_entropy(
        logits[mask], targets[mask], label_smoothing=label_smoothing
    )  # scalar, mean over real tokens
    coverage = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, P)
    regulariser = ((1.0 - coverage) ** 2).sum(dim=1).mean()  # scalar
    return ce + alpha_c * regulariser, ce
