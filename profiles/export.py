"""The profile export format: one user's profile and full preference history as JSON.

Schema ``personalizer.profile-export``, version 6. Older versions are still read: version 5
files have no record of how a kept answer was made (its ``model``, ``options``, ``strategy``
and ``steering`` are empty: null, or no options), version 4 files no preference ``judgement``
either (every preference in them is a plain ``"better"``) and no onboarding ``confirmed``
count (0), version 3 files no ``generations`` or ``ratings`` either, version 2 files no
summary metadata either (a summary in them counts as the person's own), version 1 files no
``onboarding`` key::

    {
      "schema": "personalizer.profile-export",
      "schema_version": 6,
      "exported_at": "2026-11-24T18:00:00.000000Z",
      "profile": {                      # every field of personalizer.profiles.Profile
        "user_id": "alice",
        "coefficients": {"brevity": 0.8, "warmth": -0.2},
        "covariance": [[0.1, 0.0], [0.0, 0.2]],          # or null; rows follow coefficients
        "reward_set_id": "attributes", "reward_set_version": "1",
        "summary": "Prefers short, direct answers.",
        "summary_source": "summarizer",  # or "user" (written by the person), or null
        "summary_written_at": "...",     # or null
        "summary_preferences": 1,        # the oldest preferences it was folded from
        "summary_stale": false,          # some of those were deleted since
        "summary_digest": "...",         # digest of those (the summarizer's), or null
        "preference_count": 1, "version": 3,
        "created_at": "...", "updated_at": "..."
      },
      "preferences": [                  # oldest first, every field of Preference
        {"prompt": "...", "chosen": "...", "rejected": "...", "reason": null,
         "source": "feedback", "created_at": "...",
         "judgement": "better"}         # or much_better, slightly_better, both_fine, neither
      ],
      "onboarding": null,               # or the OnboardingState: pool, asked ids, pending id,
                                        # confirmed (check answers predicted in a row,
                                        # with Onboarding(stop_checks=N))
      "generations": [                  # answers kept for feedback (retention-limited)
        {"id": "<32 hex>", "prompt": "...", "answer": "...", "created_at": "...",
         "model": "...",                # the model that wrote it, or null
         "options": {"max_new_tokens": 256, ...},   # the generation options ({}: unknown)
         "strategy": {"kind": "args", ...},         # the strategy asked for, or null
         "steering": {"path": "args-text", ...}}    # its SteeringRecord, or null (its
                                                    # "experts" weights: new in version 7)
      ],
      "ratings": [                      # thumbs up / down, oldest first
        {"prompt": "...", "answer": "...", "rating": "down", "created_at": "..."}
      ]
    }

Readers refuse a ``schema_version`` newer than :data:`EXPORT_SCHEMA_VERSION` with
:class:`~personalizer.errors.UnsupportedSchemaVersion`; unknown fields are refused, never dropped;
so is text that cannot be stored (a lone surrogate such as ``"\udc80"``, a NUL), a count or
version beyond 64 bits, and JSON nested deeper than Python can parse
(:class:`~personalizer.errors.InvalidProfileData`).
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from personalizer.errors import InvalidProfileData, UnsupportedSchemaVersion

from .models import OnboardingState, Preference, Profile, Rating, StoredGeneration, utcnow

__all__ = ["EXPORT_SCHEMA", "EXPORT_SCHEMA_VERSION", "ProfileExport", "export_texts",
           "parse_export"]

EXPORT_SCHEMA = "personalizer.profile-export"
EXPORT_SCHEMA_VERSION = 7
SUMMARY_FIELDS = frozenset({"summary_source", "summary_written_at", "summary_preferences",
                            "summary_stale", "summary_digest"})
# A kept answer's record of how it was made: new in version 6.
GENERATION_RECORD_FIELDS = ("model", "options", "strategy", "steering")


class ProfileExport(BaseModel):
    """A validated export document (see the module docstring for the JSON layout)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: Literal["personalizer.profile-export"] = Field(
        default=EXPORT_SCHEMA, alias="schema"
    )
    schema_version: Literal[1, 2, 3, 4, 5, 6, 7] = EXPORT_SCHEMA_VERSION
    exported_at: datetime = Field(default_factory=utcnow)
    profile: Profile
    preferences: list[Preference] = Field(default_factory=list)
    onboarding: OnboardingState | None = None
    generations: list[StoredGeneration] = Field(default_factory=list)
    ratings: list[Rating] = Field(default_factory=list)

    @model_validator(mode="after")
    def _counts_match(self) -> ProfileExport:
        if self.profile.preference_count != len(self.preferences):
            raise ValueError(
                f"profile.preference_count is {self.profile.preference_count} but the file "
                f"holds {len(self.preferences)} preferences; the export is incomplete or edited"
            )
        if self.profile.summary_preferences > self.profile.preference_count:
            raise ValueError(
                f"profile.summary_preferences is {self.profile.summary_preferences}, more than "
                f"the {self.profile.preference_count} preferences in the file")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """The document as plain JSON types, with ``schema`` spelled as in the file."""
        return self.model_dump(mode="json", by_alias=True)


def export_texts(doc: ProfileExport) -> list[tuple[str, str | None]]:
    """Every text an export brings, named by where it is (``preferences[0].prompt``, ...):
    what the size limits of an import hold each to."""
    return [
        *((f"preferences[{i}].{k}", getattr(p, k)) for i, p in enumerate(doc.preferences)
          for k in ("prompt", "chosen", "rejected", "reason")),
        *((f"generations[{i}].{k}", getattr(g, k)) for i, g in enumerate(doc.generations)
          for k in ("prompt", "answer")),
        *((f"ratings[{i}].{k}", getattr(r, k)) for i, r in enumerate(doc.ratings)
          for k in ("prompt", "answer"))]


def parse_export(data: Mapping[str, Any] | str | bytes) -> ProfileExport:
    """Validate an export given as a dict or JSON text.

    Raises :class:`InvalidProfileData` (naming the first problem) for anything that is not a
    version 1 to 6 export, and :class:`UnsupportedSchemaVersion` for a newer version.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except RecursionError:
            raise InvalidProfileData("profile export is nested too deeply to be one (an "
                                     "export is at most 4 levels deep)") from None
        except ValueError as exc:  # JSONDecodeError, a bad UTF-8 byte, a 5,000-digit number
            raise InvalidProfileData(f"profile export is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise InvalidProfileData(
            f"profile export must be a JSON object, not {type(data).__name__}"
        )
    if data.get("schema") != EXPORT_SCHEMA:
        raise InvalidProfileData(
            "not a personalizer profile export: 'schema' is "
            f"{reprlib.repr(data.get('schema'))}, "
            f"expected {EXPORT_SCHEMA!r}"
        )
    version = data.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > EXPORT_SCHEMA_VERSION:
        raise UnsupportedSchemaVersion(
            f"this export uses schema version {version}, but this personalizer reads up to "
            f"version {EXPORT_SCHEMA_VERSION}; upgrade personalizer to import it"
        )
    if version in (1, 2) and isinstance(data.get("profile"), Mapping):
        added = SUMMARY_FIELDS & set(data["profile"])
        if added:
            raise InvalidProfileData(
                f"invalid profile export: profile fields {sorted(added)} are new in schema "
                f"version 3, but the file says version {version}")
    if version in (1, 2, 3):
        newer = {"generations", "ratings"} & set(data)
        if newer:
            raise InvalidProfileData(
                f"invalid profile export: {sorted(newer)} are new in schema version 4, but "
                f"the file says version {version}")
    if version in (1, 2, 3, 4) and isinstance(data.get("preferences"), list):
        graded = [i for i, p in enumerate(data["preferences"])
                  if isinstance(p, Mapping) and "judgement" in p]
        if graded:
            raise InvalidProfileData(
                f"invalid profile export: preferences.{graded[0]}.judgement is new in schema "
                f"version 5, but the file says version {version}")
    if version in (4, 5) and isinstance(data.get("generations"), list):
        for i, g in enumerate(data["generations"]):
            newer = [k for k in GENERATION_RECORD_FIELDS if isinstance(g, Mapping) and k in g]
            if newer:
                raise InvalidProfileData(
                    f"invalid profile export: generations.{i}.{newer[0]} is new in schema "
                    f"version 6, but the file says version {version}")
    if version in (4, 5, 6) and isinstance(data.get("generations"), list):
        for i, g in enumerate(data["generations"]):
            steering = g.get("steering") if isinstance(g, Mapping) else None
            if isinstance(steering, Mapping) and "experts" in steering:
                raise InvalidProfileData(
                    f"invalid profile export: generations.{i}.steering.experts is new in "
                    f"schema version 7, but the file says version {version}")
    if version in (1, 2, 3, 4) and isinstance(data.get("onboarding"), Mapping) and \
            "confirmed" in data["onboarding"]:
        raise InvalidProfileData(
            "invalid profile export: onboarding.confirmed is new in schema version 5, but "
            f"the file says version {version}")
    try:
        return ProfileExport.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
            for e in exc.errors()[:3]
        )
        raise InvalidProfileData(f"invalid profile export: {problems}") from None
