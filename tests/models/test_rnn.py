"""SequenceModel: output shapes, padding that changes nothing, tied weights that are one parameter."""

from __future__ import annotations

import pytest
import torch

from heron.models.rnn import SequenceModel, detach_state


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_output_shapes_per_step_and_last(cell):
    x = torch.randint(3, 20, (4, 7))
    seq = SequenceModel(20, vocab_size=20, embed_dim=8, hidden_size=12, num_layers=2, cell=cell)
    logits, state = seq.forward_state(x)
    assert logits.shape == (4, 7, 20)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 4, 12)
    last = SequenceModel(3, vocab_size=20, embed_dim=8, hidden_size=12, cell=cell, output="last", bidirectional=True)
    assert last(x).shape == (4, 3)
    signal = SequenceModel(5, input_size=2, embed_dim=8, hidden_size=6, cell=cell)
    assert signal(torch.randn(3, 9, 2)).shape == (3, 9, 5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_with_lengths_changes_no_real_output(bidirectional):
    torch.manual_seed(0)
    model = SequenceModel(4, vocab_size=30, embed_dim=8, hidden_size=10, cell="gru", output="last",
                          bidirectional=bidirectional, dropout=0.0).eval()
    short = torch.randint(3, 30, (1, 5))
    padded = torch.cat([short, torch.zeros(1, 6, dtype=torch.long)], dim=1)  # (1, 11), PAD = 0 after step 5
    alone = model(short)
    with_pad = model(padded, lengths=torch.tensor([5]))
    torch.testing.assert_close(with_pad, alone)
    assert not torch.allclose(model(padded), alone)  # without lengths the padding does leak in


def test_per_step_outputs_match_on_real_steps_with_lengths():
    torch.manual_seed(1)
    model = SequenceModel(6, vocab_size=30, embed_dim=8, hidden_size=10, cell="lstm", dropout=0.0).eval()
    a, b = torch.randint(3, 30, (1, 8)), torch.randint(3, 30, (1, 3))
    batch = torch.cat([a, torch.cat([b, torch.zeros(1, 5, dtype=torch.long)], dim=1)])  # (2, 8)
    out = model(batch, lengths=torch.tensor([8, 3]))
    torch.testing.assert_close(out[0], model(a)[0])
    torch.testing.assert_close(out[1, :3], model(b)[0])


def test_tied_weights_are_one_parameter():
    model = SequenceModel(25, vocab_size=25, embed_dim=16, hidden_size=32, tie_weights=True)
    assert model.decoder.weight is model.encoder.weight
    names = [n for n, _ in model.named_parameters()]
    assert "decoder.weight" not in names and "encoder.weight" in names  # counted once
    untied = SequenceModel(25, vocab_size=25, embed_dim=16, hidden_size=32)
    tied_count = sum(p.numel() for p in model.parameters())
    untied_count = sum(p.numel() for p in untied.parameters())
    assert untied_count - tied_count == 25 * 32 - (32 * 16 + 16)  # the decoder matrix, less the bottleneck
    model(torch.randint(3, 25, (2, 4))).sum().backward()
    assert model.encoder.weight.grad is not None and model.encoder.weight.grad[5:].abs().sum() > 0
    with pytest.raises(ValueError, match="tie_weights"):
        SequenceModel(10, vocab_size=25, tie_weights=True)


def test_state_continues_a_sequence_and_detaches():
    torch.manual_seed(2)
    model = SequenceModel(9, vocab_size=9, embed_dim=4, hidden_size=6, cell="lstm", dropout=0.0).eval()
    x = torch.randint(3, 9, (2, 10))
    whole, _ = model.forward_state(x)
    first, state = model.forward_state(x[:, :4])
    rest, _ = model.forward_state(x[:, 4:], state=detach_state(state))
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)
    assert all(not s.requires_grad for s in detach_state(state))
