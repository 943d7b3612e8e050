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

from collections.abc import Iterable
from typing import Any, Literal

from personalizer.errors import InvalidInput
from personalizer.profiles.models import Preference

__all__ = ["TRAINING_FORMATS", "training_records"]

TRAINING_FORMATS = ("dpo", "sft")
_TIES = ("both_fine", "neither")


def training_records(preferences: Iterable[Preference],
                     format: Literal["dpo", "sft"] = "dpo") -> list[dict[str, Any]]:
    """``preferences`` as TRL records in ``format`` (see the module)."""
    if format not in TRAINING_FORMATS:
        raise InvalidInput(f"format must be one of {TRAINING_FORMATS}, not {format!r}")
    out: list[dict[str, Any]] = []
    for p in preferences:
        if p.judgement in _TIES:
            continue
        user = [{"role": "user", "content": p.prompt}]
        if format == "dpo":
            out.append({"prompt": user, "chosen": [{"role": "assistant", "content": p.chosen}],
                        "rejected": [{"role": "assistant", "content": p.rejected}]})
        else:
            out.append({"messages": [*user, {"role": "assistant", "content": p.chosen}]})
    return out
