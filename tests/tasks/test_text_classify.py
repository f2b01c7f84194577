"""Many-to-one text classification: padding never changes an answer, a counting rule is learnt, runs reload."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from heron.data.text import UNK, load_tokenizer
from heron.errors import DataError
from heron.models.rnn import SequenceModel
from heron.tasks.sequence._fit import PackedModel, SequenceBatches, predict_logits
from heron.tasks.sequence.text_classify import TextConfig, load_classifier, predict, train

GOOD, BAD = ("good", "great", "nice"), ("bad", "awful", "poor")
FILLER = tuple(f"w{i}" for i in range(40))


def sentiment_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Filler words with some good and bad words mixed in; "pos" when the good ones outnumber the bad."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good, bad = rng.choice([(1, 0), (0, 1), (2, 1), (1, 2), (2, 0), (0, 2)])
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
        words += [rng.choice(GOOD) for _ in range(good)] + [rng.choice(BAD) for _ in range(bad)]
        rng.shuffle(words)
        rows.append((" ".join(words), "pos" if good > bad else "neg"))
    return rows


def write_csv(path, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return str(path)


def small_config(data: str, out, **overrides) -> TextConfig:
    values = dict(data=data, out=str(out), embed_dim=16, hidden_size=32, epochs=8, batch_size=32, lr=1e-2,
                  dropout=0.0, quiet=True)
    return TextConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentiment")
    data = write_csv(root / "reviews.csv", sentiment_rows(400, seed=1))
    return train(small_config(data, root / "run"))


def test_a_counting_rule_is_learnt_to_95_percent_on_held_out_texts(sentiment_run):
    assert sentiment_run.metrics["accuracy"] >= 0.95
    assert sentiment_run.metrics["valid_texts"] == 80  # a stratified 20 % of 400
    first, last = sentiment_run.history[0], sentiment_run.history[-1]
    assert last["train_loss"] < first["train_loss"]


def test_the_run_folder_holds_everything_predict_needs(sentiment_run):
    path = sentiment_run.path
    for name in ("config.json", "tokenizer.json", "classes.txt", "model.safetensors", "metrics.jsonl",
                 "confusion.png", "history.png"):
        assert (path / name).is_file(), name
    assert (path / "classes.txt").read_text().split() == ["neg", "pos"]
    config = json.loads((path / "config.json").read_text())
    assert config["task"] == "text" and config["model"]["output"] == "last" and config["model"]["bidirectional"]
    assert len((path / "metrics.jsonl").read_text().splitlines()) == 8
    confusion = config["result"]["confusion"]
    assert sum(map(sum, confusion)) == 80


def test_prediction_goes_through_the_saved_tokenizer_and_unknown_words_work(sentiment_run):
    loaded = load_classifier(sentiment_run.path)
    tokenizer = load_tokenizer(sentiment_run.path / "tokenizer.json")
    assert loaded.tokenizer.itos == tokenizer.itos
    texts = ["w1 GOOD w2 Great zebra", "never seen words only here", "w3 bad w4 awful quokka w5"]
    assert UNK in tokenizer.encode(texts[1])  # all unknown to the vocabulary
    out = predict(loaded, texts)
    assert [p.label for p in out][0::2] == ["pos", "neg"]  # the run folds case, as it did in training
    for p in out:
        assert abs(sum(p.probs.values()) - 1.0) < 1e-5 and p.prob == max(p.probs.values())


def test_the_answer_for_a_text_does_not_change_when_batched_with_longer_ones():
    torch.manual_seed(0)
    net = SequenceModel(3, vocab_size=30, embed_dim=8, hidden_size=12, num_layers=2, bidirectional=True,
                        output="last").eval()
    short = [5, 6, 7, 8]
    longer = [list(range(3, 3 + n)) for n in (9, 17, 25)]
    alone = predict_logits(net, [short])[0]
    batched = predict_logits(net, [longer[0], short, *longer[1:]])[1]
    assert float((batched - alone).abs().max()) < 1e-6  # (torch.testing would import torch.distributed: 5 s)
    # the training path (bucketed batches through PackedModel) gives the same answer
    batches = SequenceBatches([short, *longer], [0, 1, 2, 0], batch_size=4)
    (codes, lengths), _ = batches.collate([3, 0, 1, 2])
    with torch.no_grad():
        assert float((PackedModel(net)((codes, lengths))[1] - alone).abs().max()) < 1e-6


def test_training_batches_are_bucketed_by_length_and_repeat_with_the_seed():
    rng = random.Random(0)
    seqs = [[3] * rng.randint(1, 60) for _ in range(400)]
    batches = SequenceBatches(seqs, [0] * 400, batch_size=8, shuffle=True, seed=3)
    batches.set_epoch(1)
    first = batches.batch_indices()
    assert sorted(i for b in first for i in b) == list(range(400))
    spread = sum(max(len(seqs[i]) for i in b) - min(len(seqs[i]) for i in b) for b in first) / len(first)
    assert spread < 10  # random batches of 8 from lengths 1..60 would spread about 40
    assert batches.batch_indices() == first
    batches.set_epoch(2)
    assert batches.batch_indices() != first


def test_words_seen_once_become_unk_in_training_batches_only():
    seqs = [[3, 4, 5], [3, 4, 6], [3, 7]]  # 5, 6 and 7 occur once
    batches = SequenceBatches(seqs, [0, 1, 0], batch_size=3, shuffle=True, unk_prob=1.0)
    [((codes, lengths), _)] = list(batches)
    assert sorted(codes[codes > 0].tolist()) == [UNK, UNK, UNK, 3, 3, 3, 4, 4]
    assert batches.collate([0, 1, 2])[0][0].tolist() == [[3, 4, 5], [3, 4, 6], [3, 7, 0]]  # outside an epoch
    half = SequenceBatches([[3, *range(10, 410)]], [0], batch_size=1, shuffle=True, unk_prob=0.5, seed=1)
    first = next(iter(half))[0][0]
    assert 150 < int((first == UNK).sum()) < 250 and torch.equal(next(iter(half))[0][0], first)


def test_a_valid_file_with_an_unknown_label_names_its_line(tmp_path):
    data = write_csv(tmp_path / "train.csv", sentiment_rows(20, seed=2))
    valid = write_csv(tmp_path / "valid.csv", [("w1 good", "pos"), ("w2 bad", "meh")])
    with pytest.raises(DataError, match=r"valid.csv: line 3: label 'meh'"):
        train(small_config(data, tmp_path / "run", valid=valid, epochs=1))


def test_max_minutes_stops_after_the_epoch_that_ran_out_of_time(tmp_path):
    data = write_csv(tmp_path / "train.csv", sentiment_rows(40, seed=3))
    run = train(small_config(data, tmp_path / "run", epochs=5, max_minutes=1e-6))
    assert run.metrics["epochs_run"] == 1 and len(run.history) == 1
    assert predict(run.path, ["w1 good"])[0].label in ("pos", "neg")
