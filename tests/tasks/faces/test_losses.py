"""Face losses against hand computations, brute-force triplet enumeration and autograd."""

from __future__ import annotations

import math
import random

import pytest
import torch

from heron.tasks.faces.losses import (
    VerificationHead,
    batch_triplet_loss,
    contrastive_loss,
    hardest_triplets,
    pairwise_distances,
    triplet_loss,
)


def _rows(n: int, d: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    rows = [[rng.gauss(0, 1) for _ in range(d)] for _ in range(n)]
    return [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in rows]  # unit length


def _dist(a: list[float], b: list[float], squared: bool) -> float:
    sq = sum((x - y) ** 2 for x, y in zip(a, b))
    return sq if squared else math.sqrt(sq)


# Four people, three images each, plus one person with a single image (no positive).
LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
ROWS = _rows(len(LABELS), 4, seed=3)
ROWS[8] = [-x for x in ROWS[6]]  # a positive farther than every negative: semi-hard mining must fall back
ROWS[1] = _rows(1, 4, seed=0)[0]
ROWS[1] = [x + 0.01 * y for x, y in zip(ROWS[0], ROWS[1])]  # a positive so near that no negative is within the margin


def _embeddings(dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(ROWS, dtype=dtype)


def test_pairwise_distances_match_loops_and_diagonal_is_zero():
    for squared in (True, False):
        got = pairwise_distances(_embeddings(), squared=squared)
        for a in range(len(ROWS)):
            for b in range(len(ROWS)):
                assert got[a, b].item() == pytest.approx(_dist(ROWS[a], ROWS[b], squared), abs=1e-12)
        assert torch.all(torch.diagonal(got) == 0)


def test_triplet_loss_equals_hand_computation():
    rng = random.Random(1)
    a, p, n = ([[rng.uniform(-1, 1) for _ in range(3)] for _ in range(6)] for _ in range(3))
    margin = 0.5
    terms = [max(_dist(a[i], p[i], True) - _dist(a[i], n[i], True) + margin, 0.0) for i in range(6)]
    assert any(t == 0 for t in terms) and any(t > 0 for t in terms)  # both sides of the hinge
    t = [torch.tensor(x, dtype=torch.float64) for x in (a, p, n)]
    assert triplet_loss(*t, margin=margin).item() == pytest.approx(sum(terms), abs=1e-12)
    assert triplet_loss(*t, margin=margin, reduction="mean").item() == pytest.approx(sum(terms) / 6, abs=1e-12)
    per = triplet_loss(*t, margin=margin, reduction="none")
    assert per.tolist() == pytest.approx(terms, abs=1e-12)


def test_triplet_loss_gradients_match_gradcheck():
    torch.manual_seed(0)
    a, p, n = (torch.randn(5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda x, y, z: triplet_loss(x, y, z, margin=0.3), (a, p, n))


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("squared", [True, False])
def test_mined_losses_gradients_match_gradcheck(mining, squared):
    e = _embeddings().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: batch_triplet_loss(x, LABELS, margin=0.5, mining=mining, squared=squared), (e,))


def test_gradients_are_finite_for_duplicate_embeddings():
    """sqrt at 0 has an infinite gradient: equal rows must not turn into NaNs."""
    base = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    e = torch.cat([base, base]).requires_grad_()  # every positive is at distance 0
    for mining in ("batch_all", "batch_hard", "semi_hard"):
        loss = batch_triplet_loss(e, [0, 1, 2, 0, 1, 2], margin=5.0, mining=mining, squared=False)
        (grad,) = torch.autograd.grad(loss, e)
        assert loss.item() > 0 and torch.isfinite(grad).all(), mining
    d = pairwise_distances(e, squared=False)
    (grad,) = torch.autograd.grad(d.sum(), e)
    assert torch.isfinite(grad).all()


def test_hardest_triplets_match_brute_force():
    positive, negative = hardest_triplets(_embeddings(torch.float32), LABELS)
    n = len(LABELS)
    for a in range(n):
        pos = [p for p in range(n) if LABELS[p] == LABELS[a] and p != a]
        neg = [q for q in range(n) if LABELS[q] != LABELS[a]]
        want_p = max(pos, key=lambda p: _dist(ROWS[a], ROWS[p], False)) if pos else -1
        want_n = min(neg, key=lambda q: _dist(ROWS[a], ROWS[q], False))
        assert (positive[a].item(), negative[a].item()) == (want_p, want_n)
    assert positive[-1].item() == -1  # the person with one image has no positive
    positive, negative = hardest_triplets(_embeddings()[:3], [7, 7, 7])
    assert negative.tolist() == [-1, -1, -1] and sorted(positive.tolist()) != [-1, -1, -1]


def _brute_force(mining: str, margin: float, squared: bool, rows=ROWS, labels=LABELS) -> float:
    """The mined loss by enumerating every triplet with plain Python."""
    n = len(labels)
    d = [[_dist(rows[a], rows[b], squared) for b in range(n)] for a in range(n)]
    losses = []
    branches = {"inside": 0, "beyond": 0, "fallback": 0}
    for a in range(n):
        pos = [p for p in range(n) if labels[p] == labels[a] and p != a]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        if mining == "batch_hard" and pos and neg:
            losses.append(max(max(d[a][p] for p in pos) - min(d[a][q] for q in neg) + margin, 0.0))
        for p in pos:
            if mining == "batch_all":
                losses += [d[a][p] - d[a][q] + margin for q in neg if d[a][p] - d[a][q] + margin > 0]
            if mining == "semi_hard" and neg:
                farther = [d[a][q] for q in neg if d[a][q] > d[a][p]]
                chosen = min(farther) if farther else max(d[a][q] for q in neg)
                if not farther:
                    branches["fallback"] += 1
                else:
                    branches["inside" if chosen < d[a][p] + margin else "beyond"] += 1
                losses.append(max(d[a][p] - chosen + margin, 0.0))
    if mining == "semi_hard" and rows is ROWS:
        assert min(branches.values()) > 0, branches  # the data exercises every case
    return sum(losses) / len(losses)


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("squared", [True, False])
def test_mined_losses_equal_brute_force(mining, squared):
    margin = 0.3
    got = batch_triplet_loss(_embeddings(), LABELS, margin=margin, mining=mining, squared=squared)
    assert got.item() == pytest.approx(_brute_force(mining, margin, squared), abs=1e-10)


@pytest.mark.parametrize("mining", ["batch_all", "semi_hard"])
def test_mined_losses_equal_brute_force_on_a_pk_batch(mining):
    rows = _rows(40, 8, seed=5)
    labels = [i // 4 for i in range(40)]  # P = 10 people x K = 4
    got = batch_triplet_loss(torch.tensor(rows, dtype=torch.float64), labels, margin=0.2, mining=mining, squared=False)
    assert got.item() == pytest.approx(_brute_force(mining, 0.2, False, rows, labels), abs=1e-10)


@pytest.mark.parametrize("mining", ["batch_all", "batch_hard", "semi_hard"])
@pytest.mark.parametrize("margin", [0.5, 2.0])
def test_mined_losses_break_exact_ties_as_documented(mining, margin):
    """A negative exactly as far as the positive is not semi-hard; a triplet with loss exactly 0 is not active."""
    rows = [[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]]  # squared distances 2 and 4, exactly
    labels = [0, 0, 1, 1]
    got = batch_triplet_loss(torch.tensor(rows, dtype=torch.float64), labels, margin=margin, mining=mining)
    assert got.item() == pytest.approx(_brute_force(mining, margin, True, rows, labels), abs=1e-12)


def test_batch_without_triplets_gives_a_zero_that_backpropagates():
    e = _embeddings()[:4].requires_grad_()
    loss = batch_triplet_loss(e, [0, 1, 2, 3])  # nobody has a positive
    loss.backward()
    assert loss.item() == 0 and torch.all(e.grad == 0)
    with pytest.raises(ValueError, match="mining"):
        batch_triplet_loss(e, [0, 0, 1, 1], mining="hardest")
    with pytest.raises(ValueError, match="labels"):
        batch_triplet_loss(e, [0, 0, 1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mined_losses_run_on_cuda_and_agree_with_cpu():
    e = _embeddings(torch.float32)
    labels = torch.tensor(LABELS)
    for mining in ("batch_all", "batch_hard", "semi_hard"):
        cpu = batch_triplet_loss(e, labels, margin=0.5, mining=mining)
        gpu = batch_triplet_loss(e.cuda(), labels.cuda(), margin=0.5, mining=mining)
        assert gpu.item() == pytest.approx(cpu.item(), abs=1e-5)
    p_gpu, n_gpu = hardest_triplets(e.cuda(), labels.cuda())
    p_cpu, n_cpu = hardest_triplets(e, labels)
    assert p_gpu.tolist() == p_cpu.tolist() and n_gpu.tolist() == n_cpu.tolist()


def test_contrastive_loss_equals_hand_computation():
    rng = random.Random(2)
    e1, e2 = ([[rng.uniform(-0.6, 0.6) for _ in range(3)] for _ in range(6)] for _ in range(2))
    e2[0] = list(e1[0])  # a different-person pair at distance 0: its gradient must stay finite
    e2[2] = [x + 1.0 for x in e1[2]]  # a different-person pair beyond the margin
    same = [0, 1, 0, 1, 0, 1]
    margin = 1.0
    terms = []
    for a, b, s in zip(e1, e2, same):
        d = _dist(a, b, False)
        terms.append(d * d if s else max(margin - d, 0.0) ** 2)
    assert terms[0] == margin**2 and any(t == 0 for t, s in zip(terms, same) if not s)  # both sides of the hinge
    t1 = torch.tensor(e1, dtype=torch.float64, requires_grad=True)
    t2 = torch.tensor(e2, dtype=torch.float64)
    loss = contrastive_loss(t1, t2, torch.tensor(same, dtype=torch.bool), margin=margin)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-12)
    loss.backward()
    assert torch.isfinite(t1.grad).all()
    far = contrastive_loss(t1, t2 + 10.0, torch.zeros(6), margin=margin)
    assert far.item() == 0.0  # different people beyond the margin cost nothing


def test_verification_head_computes_the_notes_formula():
    torch.manual_seed(0)
    head = VerificationHead(dim=5)
    f_i, f_j = torch.randn(4, 5), torch.randn(4, 5)
    w = head.linear.weight.detach()[0].tolist()
    b = head.linear.bias.detach().item()
    want = []
    for row_i, row_j in zip(f_i.tolist(), f_j.tolist()):
        z = sum(wk * abs(x - y) for wk, x, y in zip(w, row_i, row_j)) + b
        want.append(1.0 / (1.0 + math.exp(-z)))
    assert head(f_i, f_j).shape == (4,)
    assert torch.sigmoid(head(f_i, f_j)).tolist() == pytest.approx(want, abs=1e-6)
    assert head.probability(f_j, f_i).tolist() == pytest.approx(want, abs=1e-6)  # order does not matter
    with pytest.raises(ValueError, match="5"):
        head(torch.randn(4, 3), torch.randn(4, 3))
