"""The attention encoder-decoder: masks, the masked loss, and greedy against beam search."""

from __future__ import annotations

import pytest
import torch

from heron.data.text import EOS, PAD, pad_sequences
from heron.models.seq2seq import Seq2Seq, masked_cross_entropy


def _model(attention="additive", seed=0, eos_bias=0.0):
    torch.manual_seed(seed)
    model = Seq2Seq(source_vocab=12, target_vocab=9, embed_dim=8, hidden_size=10, decoder_size=12,
                   attention=attention, attention_size=7).eval()
    with torch.no_grad():
        model.out.bias[EOS] += eos_bias  # untrained, yet it ends some outputs before max_len
    return model


def _sources(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(3, 12, (int(k),), generator=g).tolist() + [EOS]
            for k in torch.randint(2, 9, (n,), generator=g)]
    return pad_sequences(seqs)


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_attention_sums_to_one_over_real_positions_and_is_zero_on_padding(attention):
    model = _model(attention)
    src, lengths = _sources()
    tgt_in = torch.randint(3, 9, (src.shape[0], 5))
    _, weights = model(src, lengths, tgt_in, return_attention=True)  # (B, T_y, T_x)
    real = torch.arange(src.shape[1])[None, :] < lengths[:, None]  # (B, T_x)
    assert weights.shape == (src.shape[0], 5, src.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(src.shape[0], 5))
    assert (weights.masked_select(~real[:, None, :].expand_as(weights)) == 0).all()
    assert (weights.masked_select(real[:, None, :].expand_as(weights)) > 0).all()


def test_extra_padding_changes_neither_logits_nor_loss():
    model = _model()
    src, lengths = _sources()
    tgt_out = torch.tensor([[3, 4, 5, EOS, PAD], [6, EOS, PAD, PAD, PAD]] * 3)
    tgt_in = torch.cat([torch.full((6, 1), EOS), tgt_out[:, :-1]], 1)
    logits = model(src, lengths, tgt_in)
    loss = masked_cross_entropy(logits, tgt_out)

    wide_src = torch.cat([src, torch.zeros(6, 4, dtype=torch.long)], 1)  # 4 more PAD columns in the source
    wide_in = torch.cat([tgt_in, torch.zeros(6, 3, dtype=torch.long)], 1)  # and 3 in the target
    wide_out = torch.cat([tgt_out, torch.zeros(6, 3, dtype=torch.long)], 1)
    wide_logits = model(wide_src, lengths, wide_in)
    torch.testing.assert_close(wide_logits[:, :5], logits)
    torch.testing.assert_close(masked_cross_entropy(wide_logits, wide_out), loss)
    # and padding really is left out: counting it as class 0 would change the loss
    counted = torch.nn.functional.cross_entropy(wide_logits.reshape(-1, 9), wide_out.reshape(-1))
    assert abs(counted.item() - loss.item()) > 1e-3


@pytest.mark.parametrize("attention, eos_bias", [("additive", 0.4), ("dot", 0.5)])
def test_beam_of_one_is_exactly_greedy(attention, eos_bias):
    model = _model(attention, seed=2, eos_bias=eos_bias)
    src, lengths = _sources(seed=3, n=8)
    greedy = model.greedy(src, lengths, max_len=12)
    beam = model.beam_search(src, lengths, beam=1, max_len=12)
    for g, b in zip(greedy, beam):
        assert g.tokens == b.tokens
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5)
        torch.testing.assert_close(g.attention, b.attention)
        assert g.finished == b.finished
    assert any(g.finished for g in greedy) and not all(g.finished for g in greedy)
    assert len({len(g.tokens) for g in greedy}) > 1


def test_beam_search_is_no_worse_than_greedy_in_model_log_probability():
    model = _model(seed=4, eos_bias=0.6)
    src, lengths = _sources(seed=5, n=10)
    greedy = model.greedy(src, lengths, max_len=10)
    beam = model.beam_search(src, lengths, beam=4, max_len=10)
    scored_beam = model.sequence_log_prob(src, lengths, [d.tokens for d in beam], [d.finished for d in beam])
    scored_greedy = model.sequence_log_prob(src, lengths, [d.tokens for d in greedy], [d.finished for d in greedy])
    torch.testing.assert_close(scored_greedy, torch.tensor([d.log_prob for d in greedy]), rtol=0, atol=1e-4)
    # the decoders' own scores are the model's log-probabilities of what they wrote
    torch.testing.assert_close(scored_beam, torch.tensor([d.log_prob for d in beam]), rtol=0, atol=1e-4)
    assert (scored_beam >= scored_greedy - 1e-5).all()
    assert (scored_beam > scored_greedy + 1e-4).any(), "beam search never beat greedy here; the test is too weak"


def test_teacher_forcing_below_one_feeds_the_models_guesses():
    model = _model()
    src, lengths = _sources()
    tgt_in = torch.cat([torch.full((6, 1), EOS), torch.randint(3, 9, (6, 5))], 1)
    full = model(src, lengths, tgt_in, teacher_forcing=1.0)
    torch.manual_seed(0)
    none = model(src, lengths, tgt_in, teacher_forcing=0.0)
    torch.testing.assert_close(none[:, 0], full[:, 0])  # the first step always sees <eos>
    assert not torch.allclose(none[:, 1:], full[:, 1:])
    greedy_logits = model(src, lengths, torch.cat([torch.full((6, 1), EOS),
                                                   none[:, :-1].argmax(-1)], 1))
    torch.testing.assert_close(greedy_logits, none)  # ratio 0 is feeding back its own argmax
