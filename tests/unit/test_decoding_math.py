"""The sampling filters, the tree mask and the slot lookup of backends/decoding_math.py, on
synthetic tensors, against transformers' own logits warpers where it has one."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from personalizer.backends.decoding.tensor_math import (
    choose_next,
    filter_top_k,
    filter_top_p,
    proxy_logits,
    slots_of,
    tree_mask,
)

NEG = float("-inf")


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = filter_top_p(logits, 0.8) > NEG
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert (filter_top_p(logits, 0.4) > NEG).sum(-1).tolist() == [1, 1]  # the top one stays
    assert (filter_top_p(logits, 0.01) > NEG).sum(-1).tolist() == [1, 1]


@pytest.mark.parametrize("p", [0.3, 0.7, 0.95])
def test_top_p_and_top_k_equal_transformers_warpers(p: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=g) * 2
    ours = filter_top_p(logits, p)
    theirs = transformers.TopPLogitsWarper(p)(None, logits.clone())
    assert torch.equal(ours > NEG, theirs > NEG)
    ours_k = filter_top_k(logits, 7)
    theirs_k = transformers.TopKLogitsWarper(7)(None, logits.clone())
    assert torch.equal(ours_k > NEG, theirs_k > NEG)


def test_choose_next_greedy_sampled_and_one_dimensional() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 1.0]])
    assert choose_next(logits, do_sample=False).tolist() == [1, 0]
    assert choose_next(logits[0], do_sample=False).tolist() == [1]  # one row, 1-D
    g = torch.Generator().manual_seed(0)
    sampled = choose_next(logits, do_sample=True, top_k=1, generator=g)
    assert sampled.shape == (2,) and sampled.tolist() == [1, 0]     # top-1 sampling = argmax
    draws = torch.stack([choose_next(logits, do_sample=True, temperature=100.0, generator=g)
                         for _ in range(200)])
    assert all(len(set(col.tolist())) == 3 for col in draws.T)      # hot: every token drawn


def test_proxy_logits_add_the_experts_shift() -> None:
    base, expert, anti = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 0.0]), torch.tensor(
        [1.0, 1.0])
    assert proxy_logits(base, expert, anti, 0.5).tolist() == [2.0, 1.5]
    zero = proxy_logits(base, expert, anti, 0.0)
    assert zero.tolist() == [1.0, 2.0] and zero is not base


def test_tree_mask_each_candidate_sees_the_prefix_and_itself() -> None:
    mask = tree_mask(3, 2)
    assert mask.shape == (1, 1, 2, 5)
    assert mask[0, 0].tolist() == [[True, True, True, True, False],
                                   [True, True, True, False, True]]
    padded = tree_mask(torch.tensor([[0, 1, 1], [1, 1, 1]]), 2)
    assert padded[0, 0].tolist() == [[False, True, True, True, False],
                                     [False, True, True, False, True]]
    assert padded[1, 0, 0].tolist() == [True, True, True, True, False]


def test_slots_of_finds_the_chosen_candidate_or_minus_one() -> None:
    candidates = torch.tensor([[5, 7, 9], [1, 2, 3]])
    assert slots_of(candidates, torch.tensor([9, 4])).tolist() == [2, -1]
    assert slots_of(candidates, torch.tensor([5, 1])).tolist() == [0, 0]
