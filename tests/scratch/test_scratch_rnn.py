"""scan, vanilla RNN and GRU with hand-written BPTT against torch.nn.RNN / GRUCell and autograd."""

import numpy as np
import pytest
import torch

from heron.scratch.charrnn import CharRNN, CharRNNConfig, Vocab, train_char_rnn
from heron.scratch.gru import (
    gru_backward,
    gru_cell_backward,
    gru_cell_forward,
    gru_forward,
)
from heron.scratch.rnn import rnn_backward, rnn_forward, scan

T, N, D, H = 7, 3, 5, 4


def test_scan_feeds_each_result_into_the_next_call():
    assert scan(lambda x, acc: acc + x, [1, 2, 3, 4], 10) == [11, 13, 16, 20]
    assert scan(lambda x, acc: acc * x, [], 1) == []


def _rnn_data(seed=0):
    rng = np.random.default_rng(seed)
    x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H)) * 0.5
    W_xh, W_hh, b_h = rng.standard_normal((H, D)) * 0.5, rng.standard_normal((H, H)) * 0.5, rng.standard_normal(H)
    return x, h0, W_xh, W_hh, b_h


def test_rnn_bptt_matches_torch_rnn_autograd(rel_error, check_numeric):
    x, h0, W_xh, W_hh, b_h = _rnn_data()
    rnn = torch.nn.RNN(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.tensor(W_xh))
        rnn.weight_hh_l0.copy_(torch.tensor(W_hh))
        rnn.bias_ih_l0.copy_(torch.tensor(b_h))
        rnn.bias_hh_l0.zero_()
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0[None], requires_grad=True)
    ref, _ = rnn(xt, h0t)
    dhs = np.random.default_rng(1).standard_normal((T, N, H))
    ref.backward(torch.tensor(dhs))

    hs, cache = rnn_forward(x, h0, W_xh, W_hh, b_h)
    assert rel_error(hs, ref.detach().numpy()) <= 1e-12
    dx, dh0, dW_xh, dW_hh, db_h = rnn_backward(dhs, cache)
    assert rel_error(dx, xt.grad.numpy()) <= 1e-7
    assert rel_error(dh0, h0t.grad.numpy()[0]) <= 1e-7
    assert rel_error(dW_xh, rnn.weight_ih_l0.grad.numpy()) <= 1e-7
    assert rel_error(dW_hh, rnn.weight_hh_l0.grad.numpy()) <= 1e-7
    assert rel_error(db_h, rnn.bias_ih_l0.grad.numpy()) <= 1e-7

    def loss():
        return float(np.sum(rnn_forward(x, h0, W_xh, W_hh, b_h)[0] * dhs))

    check_numeric(loss, W_hh, dW_hh)
    check_numeric(loss, h0, dh0)


def _gru_data(seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal((3 * H, D)) * 0.5, rng.standard_normal((3 * H, H)) * 0.5]
    params += [rng.standard_normal(3 * H) * 0.5, rng.standard_normal(3 * H) * 0.5]
    return rng.standard_normal((T, N, D)), rng.standard_normal((N, H)) * 0.5, params


def _torch_cell(params):
    cell = torch.nn.GRUCell(D, H).double()
    with torch.no_grad():
        for p, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), params, strict=True):
            p.copy_(torch.tensor(value))
    return cell


def test_gru_cell_forward_and_backward_match_torch(rel_error, check_numeric):
    x_seq, h, params = _gru_data()
    x = x_seq[0]
    cell = _torch_cell(params)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    ref = cell(xt, ht)
    dout = np.random.default_rng(2).standard_normal((N, H))
    ref.backward(torch.tensor(dout))

    out, cache = gru_cell_forward(x, h, *params)
    assert rel_error(out, ref.detach().numpy()) <= 1e-12
    dx, dh, *dparams = gru_cell_backward(dout, cache)
    assert rel_error(dx, xt.grad.numpy()) <= 1e-7
    assert rel_error(dh, ht.grad.numpy()) <= 1e-7
    for ours, p in zip(dparams, (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), strict=True):
        assert rel_error(ours, p.grad.numpy()) <= 1e-7
    check_numeric(lambda: float(np.sum(gru_cell_forward(x, h, *params)[0] * dout)), h, dh)


def test_gru_bptt_over_seven_steps_matches_torch(rel_error, check_numeric):
    x, h0, params = _gru_data(seed=3)
    cell = _torch_cell(params)
    xt, h0t = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    h, outs = h0t, []
    for t in range(T):
        h = cell(xt[t], h)
        outs.append(h)
    ref = torch.stack(outs)
    dhs = np.random.default_rng(4).standard_normal((T, N, H))
    ref.backward(torch.tensor(dhs))
    # torch.nn.GRU runs the same equations as a whole layer
    gru = torch.nn.GRU(D, H).double()
    with torch.no_grad():
        for p, value in zip((gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0), params, strict=True):
            p.copy_(torch.tensor(value))
    layer_out, _ = gru(torch.tensor(x), torch.tensor(h0[None]))

    hs, caches = gru_forward(x, h0, *params)
    assert rel_error(hs, ref.detach().numpy()) <= 1e-12
    assert rel_error(hs, layer_out.detach().numpy()) <= 1e-12
    dx, dh0, *dparams = gru_backward(dhs, caches)
    assert rel_error(dx, xt.grad.numpy()) <= 1e-7
    assert rel_error(dh0, h0t.grad.numpy()) <= 1e-7
    for ours, p in zip(dparams, (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), strict=True):
        assert rel_error(ours, p.grad.numpy()) <= 1e-7

    def loss():
        return float(np.sum(gru_forward(x, h0, *params)[0] * dhs))

    check_numeric(loss, params[1], dparams[1])
    check_numeric(loss, params[2], dparams[2])


def _torch_char_loss(model: CharRNN, inputs, targets):
    """The same character model from torch parts (nn.GRUCell for the GRU), for autograd's gradients."""
    V, Hd = model.vocab_size, model.hidden
    p = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    if model.cell == "gru":
        cell = torch.nn.GRUCell(V, Hd).double()
        with torch.no_grad():
            for name, param in zip(("W_ih", "W_hh", "b_ih", "b_hh"), cell.parameters(), strict=True):
                param.copy_(p[name])
        p.update(W_ih=cell.weight_ih, W_hh=cell.weight_hh, b_ih=cell.bias_ih, b_hh=cell.bias_hh)
    x = torch.nn.functional.one_hot(torch.tensor(inputs), V).double()  # (T, N, V)
    h = torch.zeros(inputs.shape[1], Hd, dtype=torch.float64)
    hs = []
    for t in range(len(inputs)):
        if model.cell == "rnn":
            h = torch.tanh(x[t] @ p["W_xh"].T + h @ p["W_hh"].T + p["b_h"])
        else:
            h = cell(x[t], h)
        hs.append(h)
    logits = torch.stack(hs).reshape(-1, Hd) @ p["W_hy"].T + p["b_y"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets).reshape(-1))
    loss.backward()
    return loss.item(), {k: v.grad.numpy() for k, v in p.items()}


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_char_model_loss_and_gradients_match_autograd(cell, rel_error):
    rng = np.random.default_rng(0)
    model = CharRNN(vocab_size=6, hidden=5, cell=cell, seed=1)
    model.params["b_y"] = rng.standard_normal(6)
    inputs, targets = rng.integers(0, 6, size=(6, 2)), rng.integers(0, 6, size=(6, 2))
    loss, grads, _ = model.loss_and_grads(inputs, targets)
    ref_loss, ref_grads = _torch_char_loss(model, inputs, targets)
    assert abs(loss - ref_loss) <= 1e-12
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert rel_error(grads[name], ref_grads[name]) <= 1e-7, name


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_char_model_learns_a_short_text(cell):
    text = "the cat sat on the mat. the dog sat on the log. " * 8
    config = CharRNNConfig(cell=cell, hidden=32, seq_len=16, batch=8, steps=120, lr=1e-2, seed=0)
    result = train_char_rnn(text, config)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-10:])
    assert last <= 0.7 * first, (first, last)
    sample = result.vocab.decode(result.model.sample(0, 40, np.random.default_rng(0)))
    assert len(sample) == 40 and set(sample) <= set(text)


def test_vocab_round_trip_and_short_text_refused():
    vocab = Vocab.from_text("hello world")
    assert vocab.chars == " dehlorw"
    assert vocab.decode(vocab.encode("world hello")) == "world hello"
    with pytest.raises(ValueError, match="at least"):
        train_char_rnn("short", CharRNNConfig(seq_len=25))
