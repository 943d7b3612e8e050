"""RewardSet: matrix shape, frozen normalisation, versioned coefficients, non-finite scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from personalizer.backends.rewards import (
    AttributeScorer,
    KeywordReward,
    Normalization,
    RewardSet,
    attribute_reward_set,
)
from personalizer.errors import BackendError, InvalidInput, RewardSetMismatch

CATS = KeywordReward("cats", ("cat",))
DOGS = KeywordReward("dogs", ("dog",))


class TwoColumns:
    names = ("len", "vowels")
    descriptions = ("longer", "more vowels")

    def score_many(self, prompt, responses):  # noqa: ANN001, ANN201
        return [[len(r), sum(c in "aeiou" for c in r)] for r in responses]


def test_features_matrix_and_user_reward() -> None:
    rs = RewardSet("pets", [CATS, DOGS, TwoColumns()])
    assert rs.names == ("cats", "dogs", "len", "vowels")
    m = rs.features("q", ["cat cat", "dog"])
    assert m.shape == (2, 4)
    assert m[:, 0].tolist() == [2.0, 0.0]
    c = {"cats": 1.0, "dogs": -2.0, "len": 0.0, "vowels": 0.0}
    r = rs.user_reward("q", ["cat cat", "dog"], c, reward_set_id="pets",
                       reward_set_version=rs.version)
    assert r == [2.0, -2.0]


def test_normalization_is_fitted_once_and_frozen() -> None:
    rs = RewardSet("pets", [CATS, DOGS])
    fitted = rs.fit_normalization([("q", "cat"), ("q", "cat cat cat"), ("q", "dog")])
    assert fitted.version != rs.version and fitted.base_version == rs.base_version
    m = fitted.features("q", ["cat", "cat cat cat", "dog"])
    assert m[:, 0].mean() == pytest.approx(0.0)
    assert m[:, 0].std() == pytest.approx(1.0)
    # the fitted set keeps its normalisation: new responses do not refit it
    again = fitted.features("q", ["cat cat cat cat cat"])
    assert again[0, 0] == pytest.approx((5 - 4 / 3) / np.std([1, 3, 0]))
    assert rs.normalization.mean.tolist() == [0.0, 0.0]  # the original set is unchanged
    with pytest.raises(ValueError):
        fitted.normalization.mean[0] = 3.0  # read-only


def test_coefficients_of_another_set_or_version_are_refused() -> None:
    rs = RewardSet("pets", [CATS, DOGS])
    fitted = rs.fit_normalization([("q", "cat"), ("q", "dog dog")])
    good = {"cats": 1.0, "dogs": 0.5}
    for set_id, version in [("other", rs.version), ("pets", "1"), ("pets", fitted.version)]:
        with pytest.raises(RewardSetMismatch, match="re-fit"):
            rs.user_reward("q", ["cat"], good, reward_set_id=set_id, reward_set_version=version)
    with pytest.raises(RewardSetMismatch, match="missing"):
        rs.user_reward("q", ["cat"], {"cats": 1.0}, reward_set_id="pets",
                       reward_set_version=rs.version)
    with pytest.raises(RewardSetMismatch, match="unknown"):
        rs.user_reward("q", ["cat"], {**good, "birds": 1.0}, reward_set_id="pets",
                       reward_set_version=rs.version)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_errors(bad: float) -> None:
    rs = RewardSet("x", [AttributeScorer("broken", "returns junk", lambda t: bad)])
    with pytest.raises(BackendError, match="broken"):
        rs.features("q", ["a"])

    class BadMulti(TwoColumns):
        def score_many(self, prompt, responses):  # noqa: ANN001, ANN201
            return [[1.0, bad] for _ in responses]

    with pytest.raises(BackendError, match="non-finite"):
        RewardSet("y", [BadMulti()]).features("q", ["a"])


def test_wrong_number_of_scores_is_an_error() -> None:
    class Short:
        name, description = "short", "returns too few"

        def score(self, prompt, responses):  # noqa: ANN001, ANN201
            return [1.0]

    with pytest.raises(BackendError, match="1 scores for 2"):
        RewardSet("s", [Short()]).features("q", ["a", "b"])


def test_bad_sets_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unique"):
        RewardSet("s", [CATS, CATS])
    with pytest.raises(InvalidInput, match="not a reward model"):
        RewardSet("s", [object()])  # type: ignore[list-item]
    with pytest.raises(InvalidInput):
        RewardSet("s", [])
    with pytest.raises(InvalidInput):
        Normalization([0.0], [0.0])
    with pytest.raises(InvalidInput, match="list of strings"):
        RewardSet("s", [CATS]).features("q", "cat")  # type: ignore[arg-type]


def test_attribute_set_describes_itself() -> None:
    rs = attribute_reward_set()
    assert rs.id == "attributes"
    assert rs.describe()["verbosity"].startswith("longer")
