"""Padding helpers shared by the torch-based rewards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, torch: Any) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` with rows padded on the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        mask[i, :len(r)] = 1
    return ids, mask


def unused_id(rows: Sequence[Sequence[int]], preferred: int | None, vocab_size: int) -> int:
    """A token id that occurs in no row: ``preferred`` if possible, else the smallest free id.

    Used as the padding id of a batch, so "last non-padding token" pooling can never mistake a
    real token (such as an end-of-turn id that doubles as the pad id) for padding.
    """
    used = {t for r in rows for t in r}
    if preferred is not None and preferred not in used:
        return preferred
    for candidate in range(vocab_size):
        if candidate not in used:
            return candidate
    raise ValueError("every vocabulary id occurs in the batch")  # pragma: no cover
