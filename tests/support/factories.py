"""Small decoders that run in milliseconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from captioner.checkpoint import Checkpoint
from captioner.model import Decoder, ModelConfig


def tiny_decoder(
    vocab_size: int,
    *,
    encoder_dim: int = 16,
    seed: int = 0,
    dropout: float = 0.0,
    end_bias: float = 0.0,
) -> Decoder:
    """A random decoder; ``end_bias`` raises the <end> logit so captions vary in length."""
    torch.manual_seed(seed)
    config = ModelConfig(
        vocab_size=vocab_size,
        encoder_dim=encoder_dim,
        embed_dim=12,
        attention_dim=10,
        decoder_dim=14,
        dropout=dropout,
    )
    decoder = Decoder(config)
    with torch.no_grad():
        decoder.fc.weight.mul_(20.0)  # peaky distributions, like a trained model
        decoder.fc.bias[2] += end_bias
    return decoder.eval()


def fitted_decoder(
    vocab_size: int, features: torch.Tensor, *, steps: int = 60, seed: int = 0
) -> Decoder:
    """A tiny decoder briefly fitted to random captions of lengths 1..10 for ``features``.

    Unlike a random one, it stops after different numbers of words for different
    images, which is what batched search must get right.
    """
    from captioner.model import caption_loss

    g = torch.Generator().manual_seed(seed)
    decoder = tiny_decoder(vocab_size, encoder_dim=features.size(2), seed=seed)
    with torch.no_grad():
        decoder.fc.weight.div_(20.0)
    n = features.size(0)
    captions = torch.zeros(n, 12, dtype=torch.long)
    for i in range(n):
        length = 1 + i % 10
        captions[i, 0] = 1
        captions[i, 1 : 1 + length] = torch.randint(4, vocab_size, (length,), generator=g)
        captions[i, 1 + length] = 2
    decoder.train()
    optimizer = torch.optim.Adam(decoder.parameters(), lr=2e-2)
    for _ in range(steps):
        logits, alphas = decoder(features, captions)
        loss, _ = caption_loss(logits, alphas, captions[:, 1:], pad_id=0, alpha_c=0.0)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return decoder.eval()


def tiny_checkpoint(*, max_len: int = 8):  # type: ignore[no-untyped-def]
    """The real encoder's spec and a tiny random decoder, as a checkpoint."""
    from captioner.checkpoint import Checkpoint
    from captioner.encoder import EncoderSpec
    from captioner.preprocess import Preprocess
    from captioner.search.search import SearchConfig
    from captioner.vocab import SPECIALS, Vocabulary

    vocab = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])
    decoder = tiny_decoder(len(vocab), encoder_dim=1280, end_bias=-1.0)
    return Checkpoint(
        config=decoder.config,
        encoder=EncoderSpec(),
        preprocess=Preprocess(),
        vocab=vocab,
        decoder_state=decoder.state_dict(),
        search=SearchConfig(max_len=max_len),
    )


def save_tiny_checkpoint(path):  # type: ignore[no-untyped-def]
    """Write :func:`tiny_checkpoint` to ``path`` (for commands that take --checkpoint)."""
    from captioner.checkpoint import save_checkpoint

    save_checkpoint(path, tiny_checkpoint())
    return path


def tiny_captioner(*, max_len: int = 8):  # type: ignore[no-untyped-def]
    """A real Captioner: the real EfficientNet-Lite0 encoder and a tiny random decoder."""
    from captioner.api import Captioner

    return Captioner.from_checkpoint(tiny_checkpoint(max_len=max_len), model_id="tiny")


def caption_fn(cap):  # type: ignore[no-untyped-def]
    """A worker's caption function over ``cap`` at beam 1."""

    def caption(images: Sequence[Any], sources: Sequence[str], shown: Any) -> Any:
        return cap.caption(list(images), beam=1, sources=sources, shown=shown)

    return caption


def checkpoint_of(**search: object) -> Checkpoint:
    """A tiny model's checkpoint (30 words, the default encoder's features) with these
    search settings."""
    from captioner.encoder import EncoderSpec
    from captioner.preprocess import Preprocess
    from captioner.search.config import SearchConfig
    from captioner.vocab import SPECIALS, Vocabulary

    vocab = Vocabulary([*SPECIALS, *(f"w{i}" for i in range(30))])
    decoder = tiny_decoder(len(vocab), encoder_dim=1280, end_bias=-1.0)
    return Checkpoint(
        config=decoder.config,
        encoder=EncoderSpec(),
        preprocess=Preprocess(),
        vocab=vocab,
        decoder_state=decoder.state_dict(),
        search=SearchConfig(**search),  # type: ignore[arg-type]
        metrics={"val": {"CIDEr-D": 0.5}},
    )
