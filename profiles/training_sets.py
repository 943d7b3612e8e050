"""A preference history as a training set: records that TRL reads directly.

* ``"dpo"``: ``{"prompt": [user turn], "chosen": [assistant turn], "rejected": [...]}``,
  TRL's conversational preference format (``DPOTrainer``), one per ordered choice; ties
  (``both_fine``, ``neither``) carry no order and are left out.
* ``"sft"``: ``{"messages": [user turn, assistant turn]}``, TRL's conversational language
  modelling format (``SFTTrainer``), one per chosen answer.

No record names its person: a training set pools people, and a deleted person's rows are gone
from the store before anything is exported (their influence stays only in a model already
trained on them, until it is trained again).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Literal

from personalizer.errors import CorruptProfile, InvalidInput, ProfileNotFound
from personalizer.profiles.models import Preference, validate_user_id

__all__ = ["TIES", "TRAINING_FORMATS", "stored_histories", "stored_records", "training_records"]

TRAINING_FORMATS = ("dpo", "sft")
TIES = ("both_fine", "neither")  # judgements without an order


def training_records(preferences: Iterable[Preference],
                     format: Literal["dpo", "sft"] = "dpo") -> list[dict[str, Any]]:
    """``preferences`` as TRL records in ``format`` (see the module)."""
    if format not in TRAINING_FORMATS:
        raise InvalidInput(f"format must be one of {TRAINING_FORMATS}, not {format!r}")
    out: list[dict[str, Any]] = []
    for p in preferences:
        if p.judgement in TIES:
            continue
        user = [{"role": "user", "content": p.prompt}]
        if format == "dpo":
            out.append({"prompt": user, "chosen": [{"role": "assistant", "content": p.chosen}],
                        "rejected": [{"role": "assistant", "content": p.rejected}]})
        else:
            out.append({"messages": [*user, {"role": "assistant", "content": p.chosen}]})
    return out


def stored_records(store: Any, user_id: str | None = None,
                   format: Literal["dpo", "sft"] = "dpo") -> list[dict[str, Any]]:
    """The preference history of one person (``user_id``) or of everyone in ``store`` (a
    ProfileStore) as :func:`training_records`. A person deleted while the export runs, or
    whose stored history cannot be read, is left out. Training a model on people's answers
    is the app's choice to make and to tell them about: a person deleted later stays in
    that model until it is trained again."""
    if user_id is not None:
        return training_records(store.preferences(validate_user_id(user_id)), format)
    records = training_records([], format)  # the format checked before any read
    for _, history in stored_histories(store):
        records += training_records(history, format)
    return records


def stored_histories(store: Any) -> Iterator[tuple[str, list[Preference]]]:
    """Every person's preference history in ``store``, page by page: ``(user_id,
    preferences)``. A person deleted meanwhile, or whose stored history cannot be read, is
    left out."""
    after = None
    while True:
        page = store.list_profiles(limit=500, after=after)
        for uid in [p.user_id for p in page.profiles] + list(page.damaged):
            try:
                history = store.preferences(uid)
            except (ProfileNotFound, CorruptProfile):  # deleted since, or unreadable
                continue
            yield uid, history
        if page.next_after is None:
            return
        after = page.next_after
