import pytest
import torch

from captioner.model import Decoder, ModelConfig, caption_loss


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        ModelConfig(vocab_size=0)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(vocab_size=10, dropout=1.0)


def test_layers_keep_the_names_of_the_reference_implementations() -> None:
    names = set(Decoder(ModelConfig(vocab_size=10)).state_dict())
    for layer in (
        "attention.encoder_att",
        "attention.decoder_att",
        "attention.full_att",
        "embedding",
        "decode_step",
        "init_h",
        "init_c",
        "f_beta",
        "fc",
    ):
        assert any(n.startswith(layer + ".") for n in names), layer


def test_forward_shapes_and_attention_sums_to_one() -> None:
    config = ModelConfig(
        vocab_size=25, encoder_dim=16, embed_dim=8, attention_dim=6, decoder_dim=10
    )
    decoder = Decoder(config)
    features = torch.randn(3, 9, 16)  # (B, P, D)
    captions = torch.randint(4, 25, (3, 7))  # (B, T)
    logits, alphas = decoder(features, captions)
    assert logits.shape == (3, 6, 25)
    assert alphas.shape == (3, 6, 9)
    torch.testing.assert_close(alphas.sum(-1), torch.ones(3, 6))


def test_every_trainable_parameter_gets_a_gradient() -> None:
    config = ModelConfig(
        vocab_size=20, encoder_dim=16, embed_dim=8, attention_dim=6, decoder_dim=10
    )
    decoder = Decoder(config).train()
    features = torch.randn(4, 9, 16)
    captions = torch.tensor(
        [[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0], [1, 4, 4, 4, 4, 2], [1, 10, 2, 0, 0, 0]]
    )
    logits, alphas = decoder(features, captions)
    loss, _ = caption_loss(logits, alphas, captions[:, 1:], pad_id=0, alpha_c=1.0)
    loss.backward()
    for name, p in decoder.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_loss_ignores_padding_and_adds_the_attention_regulariser() -> None:
    # Two steps, one real token: only step 0 counts in the CE and in Σ_t α.
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]]))  # (1, 2, 3)
    targets = torch.tensor([[1, 0]])  # token 1 then padding
    alphas = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]])  # (1, 2, P=2)
    loss, ce = caption_loss(logits, alphas, targets, pad_id=0, alpha_c=2.0)
    expected_ce = -torch.log(torch.tensor(0.25))
    # Σ_p (1 − Σ_t α_tp)² over the real step: (1-0.75)² + (1-0.25)² = 0.0625 + 0.5625
    expected_reg = 2.0 * (0.0625 + 0.5625)
    torch.testing.assert_close(ce, expected_ce)
    torch.testing.assert_close(loss, expected_ce + expected_reg)
