"""The options of one hosted request, checked before any I/O.

:class:`HostedOptions` is what a hosted API can take; :func:`check_options` refuses what no
hosted model has (:data:`LOCAL_ONLY`) and what one provider lacks, each with what to do
instead, and validates the rest. Only what the caller set is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from personalizer.errors import InvalidInput, UnsupportedRequest
from personalizer.steering import StopStrings, no_bool
from personalizer.types import validation_message

__all__ = ["LOCAL_ONLY", "HostedOptions", "ModelName", "Parallel", "Retries", "Seconds",
           "Url", "Weight", "check_options"]

ModelName = Annotated[str, Field(min_length=1, max_length=256)]
Url = Annotated[str, Field(min_length=1, max_length=2048)]
Seconds = Annotated[float, Field(gt=0, le=86400, allow_inf_nan=False)]
Retries = Annotated[int, Field(ge=0, le=100)]
Weight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Parallel = Annotated[int, Field(ge=1, le=256)]

# Options of local generators that no hosted API has, with what to do instead.
LOCAL_ONLY: dict[str, str] = {
    "do_sample": "hosted models always sample (do_sample=True is accepted and changes "
                 "nothing); set temperature=0 for their most likely answer",
    "seed": "hosted models give no seed-exact sampling",
    "truncate": "the provider decides how long a prompt may be",
    "proxy": "proxy-tuning needs the model's logits; use a LocalGenerator",
    "top_logprobs": "hosted generators return text only",
}


class HostedOptions(BaseModel):
    """Options of one hosted request. Only what the caller set is sent (plus what the API
    requires), so a model that refuses a parameter never receives one it was not given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_new_tokens: int | None = Field(default=None, ge=1, le=1_000_000,
                                       description="Most tokens to generate.")
    temperature: float | None = Field(default=None, ge=0, le=2,
                                      description="Sampling temperature.")
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus sampling.")
    top_k: int | None = Field(default=None, ge=1, le=1_000_000, description="Sample among "
                              "the k most likely tokens (Anthropic only).")
    stop: StopStrings | None = Field(default=None, description="Stop strings.")

    _numbers = field_validator("max_new_tokens", "temperature", "top_p", "top_k",
                               mode="before")(no_bool)

    def given(self) -> dict[str, Any]:
        """The options the caller set (None counts as not set)."""
        return self.model_dump(exclude_unset=True, exclude_none=True)


def check_options(options: Mapping[str, Any], lacks: Mapping[str, str], owner: str
                  ) -> HostedOptions:
    """``options`` as HostedOptions; ``lacks``: what this provider cannot take (with what to
    do instead); ``owner`` names the generator in messages."""
    if options.get("do_sample") is True and options.get("temperature") == 0:
        raise InvalidInput(
            "do_sample=True asks the provider to sample, and temperature=0 for its most "
            "likely answer: give one of them (hosted models sample unless temperature=0)")
    options = {k: v for k, v in options.items()
               if v is not None and not (k == "do_sample" and v is True)}
    for name in options:
        reason = lacks.get(name) or LOCAL_ONLY.get(name)
        if reason is not None:
            raise UnsupportedRequest(f"{owner} cannot take {name!r}: {reason}")
    try:
        return HostedOptions.model_validate(options)
    except ValidationError as exc:
        raise InvalidInput(
            f"generation option {validation_message(exc)} (options of {owner}: "
            f"{', '.join(HostedOptions.model_fields)})") from None
