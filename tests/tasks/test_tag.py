"""Many-to-many tagging (T_x = T_y): padding is left out of the loss exactly, a context rule is learnt."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from heron.data.text import PAD, UNK
from heron.errors import DataError
from heron.models.rnn import SequenceModel
from heron.tasks.sequence._fit import IGNORE, PackedModel, SequenceBatches
from heron.tasks.sequence.tag import (TagConfig, bio_spans, encode_tokens, entity_f1, load_tagger, looks_like_bio,
                                      predict, token_vocabulary, train)

WORDS = tuple(f"w{i}" for i in range(25))
NAMES = tuple(f"Name{i}" for i in range(10))


def tagged_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """NUM for digit tokens, CAP for capitalised ones, NEG for the word right after "not", else O."""
    pairs, previous = [], ""
    for _ in range(rng.randint(3, 12)):
        kind = rng.random()
        token = (str(rng.randint(0, 99)) if kind < 0.25 else rng.choice(NAMES) if kind < 0.45
                 else "not" if kind < 0.6 else rng.choice(WORDS))
        tag = ("NEG" if previous == "not" else "NUM" if token.isdigit() else "CAP" if token[0].isupper() else "O")
        pairs.append((token, tag))
        previous = token
    return pairs


def write_conll(path, sentences) -> str:
    blocks = ["\n".join(f"{token} {tag}" for token, tag in sentence) for sentence in sentences]
    path.write_text("-DOCSTART- O\n\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return str(path)


def small_config(data: str, out, **overrides) -> TagConfig:
    values = dict(data=data, out=str(out), embed_dim=16, hidden_size=32, epochs=8, batch_size=16, lr=1e-2,
                  dropout=0.0, quiet=True)
    return TagConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def tag_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagging")
    rng = random.Random(4)
    data = write_conll(root / "train.conll", [tagged_sentence(rng) for _ in range(300)])
    return train(small_config(data, root / "run"))


def test_a_tag_that_depends_on_the_previous_token_is_learnt(tag_run):
    assert tag_run.metrics["accuracy"] >= 0.95
    assert tag_run.tags == ["CAP", "NEG", "NUM", "O"]
    assert "entity_f1" not in tag_run.metrics  # not BIO tags
    config = json.loads((tag_run.path / "config.json").read_text())
    assert config["task"] == "tag" and config["model"]["output"] == "sequence"
    assert (tag_run.path / "tags.txt").read_text().split() == tag_run.tags


def test_prediction_splits_on_whitespace_and_takes_unknown_words(tag_run):
    loaded = load_tagger(tag_run.path)
    assert encode_tokens(loaded.tokenizer, ["neverseen"]) == [UNK]
    [pairs] = predict(loaded, ["w1 not w2 Name3 42 neverseen"])
    assert [token for token, _ in pairs] == ["w1", "not", "w2", "Name3", "42", "neverseen"]
    assert [tag for _, tag in pairs][:5] == ["O", "O", "NEG", "CAP", "NUM"]
    assert predict(loaded, [["not", "w3"]]) == [[("not", "O"), ("w3", "NEG")]]


def test_the_masked_loss_is_the_same_with_extra_padding():
    torch.manual_seed(0)
    net = SequenceModel(5, vocab_size=20, embed_dim=8, hidden_size=12, bidirectional=True, output="sequence").eval()
    model, loss_fn = PackedModel(net), nn.CrossEntropyLoss()  # ignore_index is IGNORE (-100) by default
    seqs = [[3, 4, 5], [6, 7, 8, 9, 10, 11], [12]]
    tags = [[1, 2, 3], [0, 1, 2, 3, 4, 0], [4]]
    batches = SequenceBatches(seqs, tags, batch_size=3)
    (codes, lengths), flat = batches.collate([0, 1, 2])
    targets = flat.view(3, 6)
    assert codes.shape == (3, 6) and int((targets == IGNORE).sum()) == 8
    wide_codes = torch.cat([codes, torch.full((3, 7), PAD)], dim=1)  # (3, 13): 7 more padded steps
    wide_targets = torch.cat([targets, torch.full((3, 7), IGNORE)], dim=1)
    with torch.no_grad():
        loss = loss_fn(model((codes, lengths)), targets.flatten())
        wide = loss_fn(model((wide_codes, lengths)), wide_targets.flatten())
        # the mean over the 10 real tokens, each sentence run alone
        alone = [nn.functional.cross_entropy(net(torch.tensor([s]))[0], torch.tensor(t), reduction="sum")
                 for s, t in zip(seqs, tags)]
    assert abs(loss.item() - wide.item()) < 1e-6
    assert abs(loss.item() - sum(alone).item() / 10) < 1e-5


def test_bio_spans_and_entity_f1():
    assert looks_like_bio(["O", "B-PER", "I-PER"]) and not looks_like_bio(["O", "NUM"]) and not looks_like_bio(["O"])
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG", "I-ORG"]) == {
        (0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC"), (5, 7, "ORG")}
    true = [["B-PER", "I-PER", "O", "B-LOC"]]
    predicted = [["B-PER", "I-PER", "O", "O"]]
    scores = entity_f1(true, predicted)
    assert scores["entity_precision"] == 1.0 and scores["entity_recall"] == 0.5
    assert abs(scores["entity_f1"] - 2 / 3) < 1e-12


def test_bio_tags_get_an_entity_f1(tmp_path):
    rng = random.Random(5)
    sentences = []
    for _ in range(200):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        at = rng.randrange(len(words) + 1)
        sentence = [(w, "O") for w in words[:at]] + [("Mr", "B-PER"), (rng.choice(NAMES), "I-PER")]
        sentences.append(sentence + [(w, "O") for w in words[at:]])
    run = train(small_config(write_conll(tmp_path / "ner.conll", sentences), tmp_path / "run"))
    assert run.metrics["entity_f1"] >= 0.9


def test_vocabulary_is_over_tokens_ranked_by_count():
    vocab = token_vocabulary([["b", "a", "b"], ["c", "b", "a", "<pad>"]], max_vocab=5)
    assert vocab.itos == ["<pad>", "<unk>", "<eos>", "b", "a"]
    assert encode_tokens(vocab, ["a", "c", "B"]) == [4, UNK, UNK]
    assert encode_tokens(token_vocabulary([["B"]], lower=True), ["b", "B"]) == [3, 3]


def test_a_valid_file_with_an_unknown_tag_names_its_line(tmp_path):
    rng = random.Random(6)
    data = write_conll(tmp_path / "train.conll", [tagged_sentence(rng) for _ in range(10)])
    valid = tmp_path / "valid.conll"
    valid.write_text("w1 O\nw2 O\n\nw3 O\nw4 XYZ\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"valid.conll: line 5: tag 'XYZ'"):
        train(small_config(data, tmp_path / "run", valid=str(valid), epochs=1))
