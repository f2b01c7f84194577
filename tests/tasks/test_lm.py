"""Language models: contiguous batches, truncated BPTT that carries state, clipping, sampling, a run end to end."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
import torch

from heron.data.text import CharTokenizer
from heron.errors import DataError
from heron.models.rnn import SequenceModel
from heron.tasks.sequence.generate import generate
from heron.tasks.sequence.lm import (LMConfig, StatefulLM, StreamBatches, lm_learner, load_language_model,
                                     split_text, stream_nll, train_language_model)
from heron.train.callbacks import Callback


def _sentences(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    subjects, verbs, objects = ["the cat", "a dog", "my bird"], ["sees", "likes", "finds"], ["the mat", "a hat", "one box"]
    return "".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}.\n" for _ in range(n))


def test_stream_batches_are_contiguous_rows_with_targets_shifted_by_one():
    stream = torch.arange(3, 3 + 101)  # 101 tokens -> 4 rows of 25 (the last token is only a target)
    batches = StreamBatches(stream, batch_size=4, bptt=10)
    windows = list(batches)
    assert len(batches) == len(windows) == 3 and windows[-1][0].shape == (4, 5)  # 10 + 10 + 5 columns
    x = torch.cat([w[0] for w in windows], dim=1)  # (4, 25)
    y = torch.cat([w[1] for w in windows], dim=1)
    assert torch.equal(x.reshape(-1), stream[:100]) and torch.equal(y, x + 1)
    # epochs of 2 batches continue where the last one stopped, wrapping round at the end
    short = StreamBatches(stream, batch_size=4, bptt=10, batches_per_epoch=2)
    short.set_epoch(2)
    assert [short.window(i) for i in range(2)] == [2, 0]
    assert torch.equal(next(iter(short))[0], windows[2][0])


def test_split_text_keeps_the_last_tenth_from_a_line_start():
    text = "".join(f"line {i:03d}\n" for i in range(100))
    train, valid = split_text(text, 0.1)
    assert train + valid == text and valid.startswith("line 090") and len(valid) == len(text) // 10


def _mode_stream(n: int, seed: int) -> torch.Tensor:
    """Runs of 40 tokens in one of two modes: mode A draws from {3,4,5,6}, mode B from {5,6,7,8}.

    Tokens 5 and 6 say nothing about the mode; knowing it (from earlier
    tokens, possibly many steps back) is worth ln(8/4) on every other token.
    """
    g = torch.Generator().manual_seed(seed)
    runs = []
    for _ in range(n // 40):
        low = 3 if torch.rand(1, generator=g).item() < 0.5 else 5
        runs.append(torch.randint(low, low + 4, (40,), generator=g))
    return torch.cat(runs)


def _train_modes(carry: bool) -> float:
    torch.manual_seed(0)
    model = StatefulLM(SequenceModel(9, vocab_size=9, embed_dim=8, hidden_size=16, num_layers=1, cell="gru",
                                     dropout=0.0), carry=carry)
    batches = StreamBatches(_mode_stream(32 * 240, seed=1), batch_size=32, bptt=2)  # bptt 2 << runs of 40
    lm_learner(model, batches, lr=2e-2, grad_clip=1.0).fit(2)
    total, count = stream_nll(model.lm, _mode_stream(8 * 400, seed=2), batch_size=8, bptt=2, carry=carry)
    return total / count


def test_truncated_bptt_with_carried_state_beats_resetting_every_batch():
    carried, reset = _train_modes(carry=True), _train_modes(carry=False)
    known = math.log(4)  # the loss when the mode is always known (resetting every 2 steps: about 1.65)
    assert carried < reset - 0.07
    assert carried < known + 0.1  # close to knowing the mode all the time


class _GradNorms(Callback):
    """Records the total gradient norm the optimizer steps with (after the Learner's clipping)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def before_fit(self, learner) -> None:
        step = learner.opt.step

        def recording_step(*args, **kwargs):
            grads = [p.grad for g in learner.opt.param_groups for p in g["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
            return step(*args, **kwargs)

        learner.opt.step = recording_step


@pytest.mark.parametrize("clip", [None, 0.05])
def test_clipping_caps_the_gradient_norm(clip):
    torch.manual_seed(0)
    stream = torch.randint(3, 20, (2000,))
    model = StatefulLM(SequenceModel(20, vocab_size=20, embed_dim=8, hidden_size=16, num_layers=1))
    norms = _GradNorms()
    lm_learner(model, StreamBatches(stream, 8, 16), [norms], lr=1e-2, grad_clip=clip).fit(1)
    assert len(norms.norms) == 16
    if clip is None:
        assert min(norms.norms) > 0.1  # what clipping has to cut
    else:
        assert max(norms.norms) <= clip * (1 + 1e-4)


def _sampler():
    torch.manual_seed(3)
    tokenizer = CharTokenizer.fit(_sentences(30))
    model = SequenceModel(len(tokenizer), vocab_size=len(tokenizer), embed_dim=8, hidden_size=16, num_layers=1)
    return model, tokenizer


def test_sampling_as_temperature_goes_to_zero_is_greedy_decoding():
    model, tok = _sampler()
    greedy = generate(model, tok, "the ", n=40, temperature=0)
    assert generate(model, tok, "the ", n=40, temperature=1e-4, seed=5) == greedy
    assert generate(model, tok, "the ", n=40, temperature=1.0, top_k=1, seed=6) == greedy
    assert generate(model, tok, "the ", n=40, temperature=1.5, seed=5) != greedy


def test_same_seed_same_sample_and_streaming_shows_every_piece():
    model, tok = _sampler()
    pieces: list[str] = []
    first = generate(model, tok, "a dog", n=60, temperature=1.0, top_k=5, seed=11, on_text=pieces.append)
    assert generate(model, tok, "a dog", n=60, temperature=1.0, top_k=5, seed=11) == first
    assert generate(model, tok, "a dog", n=60, temperature=1.0, top_k=5, seed=12) != first
    assert "".join(pieces) == first and len(pieces) == 60 and len(first) == 60
    assert "\ufffd" not in first  # <unk> and <pad> are never sampled


def _unigram_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log(n / len(text)) for n in counts.values())


def test_a_small_char_model_learns_the_text_and_its_run_reloads(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(_sentences(600))
    config = LMConfig(text=str(path), out=str(tmp_path / "run"), hidden=48, embed_dim=16, layers=1, dropout=0.0,
                      bptt=32, batch_size=8, lr=1e-2, epochs=3, batches_per_epoch=25, max_minutes=None, quiet=True)
    result = train_language_model(config)
    train_text, valid_text = split_text(path.read_text())
    entropy = _unigram_entropy(train_text)
    assert result.metrics["valid_loss"] < 0.25 * entropy
    assert result.metrics["valid_bpc"] == pytest.approx(result.metrics["valid_loss"] / math.log(2))
    assert {"config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl"} <= {p.name for p in result.run.iterdir()}
    rows = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all("valid_perplexity" in r for r in rows)
    lm = load_language_model(result.run)
    scored = lm.evaluate(valid_text)
    assert scored["loss"] == pytest.approx(result.metrics["valid_loss"], rel=1e-4)
    assert scored["perplexity"] == pytest.approx(math.exp(scored["loss"]))
    text = lm.generate("the ", n=200, temperature=0.5, seed=0)
    words = text.replace(".", " ").split()
    known = {"the", "cat", "a", "dog", "my", "bird", "sees", "likes", "finds", "mat", "hat", "one", "box"}
    assert sum(w in known for w in words) > 0.8 * len(words)  # it writes the text's words


def test_a_time_budget_stops_at_an_epoch_boundary_and_keeps_the_best(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(_sentences(200))
    config = LMConfig(text=str(path), out=str(tmp_path / "run"), hidden=16, embed_dim=8, layers=1, bptt=16,
                      batch_size=4, epochs=50, max_minutes=1e-6, quiet=True)  # over before training starts
    result = train_language_model(config)
    assert result.metrics["epochs_run"] == 1
    assert result.metrics["best_epoch"] >= 1
    assert result.history[-1]["lr"] < config.lr / 1000  # the schedule followed the clock to its end
    saved = json.loads((result.run / "config.json").read_text())
    assert saved["metrics"]["epochs_run"] == result.metrics["epochs_run"]


def test_word_level_bits_per_char_count_the_characters(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text(_sentences(300))
    config = LMConfig(text=str(path), out=str(tmp_path / "run"), level="word", tie_weights=True, hidden=32,
                      layers=1, bptt=8, batch_size=4, epochs=2, batches_per_epoch=20, max_minutes=None, quiet=True)
    result = train_language_model(config)
    lm = load_language_model(result.run)
    assert lm.model.decoder.weight is lm.model.encoder.weight  # tied after loading too
    _, valid_text = split_text(path.read_text())
    scored = lm.evaluate(valid_text)
    # total nats over the slice / ln 2 / its characters: about 3 characters per word-level token here
    assert scored["bits_per_char"] == pytest.approx(scored["loss"] * scored["tokens"] / math.log(2) / len(valid_text))
    assert scored["tokens"] < len(valid_text) / 2


def test_a_text_too_short_for_the_batch_is_a_data_error(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("ab\n" * 5)
    with pytest.raises(DataError, match="tiny.txt"):
        train_language_model(LMConfig(text=str(path), out=str(tmp_path / "run"), batch_size=32, quiet=True))


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch):
    from heron.errors import TrainingError
    from heron.tasks.sequence import lm as lm_module

    path = tmp_path / "story.txt"
    path.write_text(_sentences(200))

    def config(out):
        return LMConfig(text=str(path), out=str(tmp_path / out), hidden=16, embed_dim=8, layers=1, bptt=16,
                        batch_size=4, epochs=3, batches_per_epoch=5, max_minutes=None, quiet=True)

    whole = train_language_model(config("whole"))
    score = lm_module.LMValidation.after_epoch

    def interrupt_at_epoch_2(self, learner):
        if learner.epoch == 2:
            raise KeyboardInterrupt
        score(self, learner)

    monkeypatch.setattr(lm_module.LMValidation, "after_epoch", interrupt_at_epoch_2)
    with pytest.raises(TrainingError, match="resume"):
        train_language_model(config("cut"))
    monkeypatch.setattr(lm_module.LMValidation, "after_epoch", score)
    resumed = train_language_model(config("cut"), resume=True)
    assert resumed.metrics["valid_loss"] == pytest.approx(whole.metrics["valid_loss"], abs=1e-6)
    a, b = load_language_model(whole.run).model, load_language_model(resumed.run).model
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, msg=name)
    rows = [json.loads(line)["epoch"] for line in (resumed.run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]
