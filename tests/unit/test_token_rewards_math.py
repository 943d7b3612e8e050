"""Token-level base rewards folded into the hidden state (groundwork for #14): the folded form
equals logits + strength * sum_j c_j s_j, plain rows stay plain, rows are independent."""

from __future__ import annotations

import pytest
import torch

from personalizer.backends.decoding.tensor_math import fold_token_rewards, token_reward_scores

ROWS, D, J, R, V = 5, 16, 3, 2, 50


@pytest.fixture
def parts() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"hidden": torch.randn(ROWS, D, generator=g),
            "down": torch.randn(J, D, R, generator=g), "up": torch.randn(J, R, D, generator=g),
            "bias": torch.randn(J, D, generator=g), "w_out": torch.randn(V, D, generator=g)}


def test_folded_hidden_state_gives_the_steered_logits(parts: dict[str, torch.Tensor]) -> None:
    p = parts
    coef = torch.randn(ROWS, J, generator=torch.Generator().manual_seed(1))
    strength = torch.tensor([0.5, 1.0, 2.0, 0.0, 3.0])
    before = {k: v.clone() for k, v in p.items()}
    # by hand, in float64, one row and reward at a time: reward j's score of every token is
    # W (U_j (D_j^T h) + b_j), and the steered logits W h + w sum_j c_j s_j
    h, w_out = p["hidden"].double(), p["w_out"].double()
    score = torch.zeros(ROWS, J, V, dtype=torch.float64)
    steered = torch.zeros(ROWS, V, dtype=torch.float64)
    for n in range(ROWS):
        steered[n] = w_out @ h[n]
        for j in range(J):
            low = p["down"][j].double().T @ h[n]  # D_j^T h: (R,)
            shift = p["up"][j].double().T @ low + p["bias"][j].double()  # U_j low + b_j: (D,)
            score[n, j] = w_out @ shift
            steered[n] += float(strength[n]) * float(coef[n, j]) * score[n, j]
    scores = token_reward_scores(p["hidden"], p["down"], p["up"], p["bias"], p["w_out"])
    assert scores.shape == (ROWS, J, V)
    torch.testing.assert_close(scores.double(), score, rtol=1e-4, atol=1e-4)
    folded = fold_token_rewards(p["hidden"], p["down"], p["up"], p["bias"], coef, strength)
    assert folded.shape == (ROWS, D)
    torch.testing.assert_close((folded @ p["w_out"].T).double(), steered, rtol=1e-4, atol=1e-4)
    assert all(torch.equal(p[k], before[k]) for k in p)  # inputs not modified in place


def test_plain_rows_are_untouched_and_rows_are_independent(
        parts: dict[str, torch.Tensor]) -> None:
    p = parts
    coef = torch.randn(ROWS, J, generator=torch.Generator().manual_seed(2))
    coef[1] = 0.0
    folded = fold_token_rewards(p["hidden"], p["down"], p["up"], p["bias"], coef,
                                torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(folded[0], p["hidden"][0]) and torch.equal(folded[1], p["hidden"][1])
    alone = fold_token_rewards(p["hidden"][2:3], p["down"], p["up"], p["bias"], coef[2:3], 1.0)
    assert torch.allclose(alone[0], folded[2], atol=1e-6)
    assert not torch.allclose(folded[2], p["hidden"][2])  # a steered row moves


def test_a_user_leaning_on_a_reward_raises_its_tokens(parts: dict[str, torch.Tensor]) -> None:
    p = parts
    scores = token_reward_scores(p["hidden"], p["down"], p["up"], p["bias"], p["w_out"])
    coef = torch.zeros(ROWS, J)
    coef[:, 0] = 1.0
    plain = p["hidden"] @ p["w_out"].T
    steered = fold_token_rewards(p["hidden"], p["down"], p["up"], p["bias"], coef, 1.0) @ \
        p["w_out"].T
    # the token base reward 0 likes best gains more than the one it likes least
    best, worst = scores[:, 0].argmax(-1), scores[:, 0].argmin(-1)
    rows = torch.arange(ROWS)
    gain = steered - plain
    assert (gain[rows, best] > gain[rows, worst]).all()


def test_shapes_that_do_not_match_are_refused(parts: dict[str, torch.Tensor]) -> None:
    p = parts
    with pytest.raises(ValueError, match="coefficients must be"):
        fold_token_rewards(p["hidden"], p["down"], p["up"], p["bias"], torch.zeros(J), 1.0)
    with pytest.raises(ValueError, match="shapes do not match"):
        token_reward_scores(p["hidden"][:, :4], p["down"], p["up"], p["bias"], p["w_out"])
