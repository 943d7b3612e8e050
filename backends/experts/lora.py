"""Attribute experts as LoRA adapters, applied per row of one batched forward.

An :class:`Expert` is one LoRA adapter (``A``: ``(r, in)``, ``B``: ``(out, r)`` per attention
projection, scaled by ``alpha / r``) trained to prefer "more of" one base reward, stamped
with the fingerprint of the base model it was trained on. An :class:`ExpertSet` holds a
model's experts and hooks its projections once (:meth:`ExpertSet.attach`): a hook adds
``scale * B_e A_e x`` to the rows routed to expert ``e`` and leaves every other row (and
every forward outside :meth:`ExpertSet.routed`) exactly as it was. So the base model and
all its experts run as rows of one forward, each row with its own KV cache, and plain
decoding on the same model is untouched. The route lives in a context variable: threads
decoding on one model at once never see each other's route.

Decoding needs only torch and safetensors; training (:mod:`.training`) needs the
``[experts]`` extra (PEFT, TRL).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from personalizer.errors import InvalidInput

__all__ = ["EXPERT_FORMAT", "Expert", "ExpertMix", "ExpertSet"]

EXPERT_FORMAT = "1"
# (expert set, the routed rows, their experts' indices) of the forward being run
_ROUTE: contextvars.ContextVar[tuple[ExpertSet, torch.Tensor, torch.Tensor] | None] = \
    contextvars.ContextVar("personalizer_expert_route", default=None)


def _fingerprint(model: Any) -> str:
    from personalizer.backends.heads.token import model_fingerprint

    return model_fingerprint(model)


@dataclass(frozen=True)
class Expert:
    """One attribute expert: LoRA matrices per projection (path in the causal LM ->
    ``(A, B)``), its ``scale`` (``alpha / r``), the base reward it serves and the base
    model's fingerprint."""

    TARGETS: ClassVar[tuple[str, ...]] = ("q_proj", "k_proj", "v_proj", "o_proj")

    attribute: str
    weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float
    base_model: str  # heads.token.model_fingerprint of the model it was trained on
    about: Mapping[str, Any] = field(default_factory=dict)
    reward_set: str = "attributes"  # the id of the reward sets whose `attribute` it serves

    @classmethod
    def from_peft_state(cls, attribute: str, state: Mapping[str, torch.Tensor], *, rank: int,
                        alpha: float, base_model: Any, dtype: str = "bfloat16",
                        about: Mapping[str, Any] | None = None) -> Expert:
        """An expert from a PEFT LoRA state dict (``...<path>.lora_A.weight``)."""
        to = getattr(torch, dtype)
        names = {n for n, _ in base_model.named_modules()}
        weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for key, a in state.items():
            if ".lora_A." not in key:
                continue
            path = key.split(".lora_A.")[0]
            while path and path not in names:  # PEFT's own prefixes (base_model.model.)
                path = path.partition(".")[2]
            if not path:
                raise InvalidInput(f"LoRA weight {key!r} names no module of the base model")
            b = state[key.replace(".lora_A.", ".lora_B.")]
            weights[path] = (a.detach().to(to).cpu().contiguous(),
                             b.detach().to(to).cpu().contiguous())
        return cls(attribute=attribute, weights=weights, scale=alpha / rank,
                   base_model=_fingerprint(base_model), about=dict(about or {}))

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (``<module>.A`` / ``<module>.B``, metadata: format,
        attribute, scale, base model fingerprint, how it was trained)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"{m}.{s}": t for m, (a, b) in self.weights.items()
                   for s, t in (("A", a), ("B", b))}
        save_file(tensors, str(path), metadata={
            "format": EXPERT_FORMAT, "attribute": self.attribute, "scale": repr(self.scale),
            "base_model": self.base_model, "reward_set": self.reward_set,
            "about": json.dumps(dict(self.about))})
        return path

    @classmethod
    def load(cls, path: str | Path) -> Expert:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # safetensors' own error type is not a public name
            raise InvalidInput(f"{path} is not an expert file: {exc}") from None
        if meta.get("format") != EXPERT_FORMAT:
            raise InvalidInput(f"{path} is an expert file of format {meta.get('format')!r}; "
                               f"this version reads format {EXPERT_FORMAT!r}: train it again "
                               "(personalizer experts train)")
        modules = sorted({k.rsplit(".", 1)[0] for k in tensors})
        return cls(attribute=meta["attribute"],
                   weights={m: (tensors[f"{m}.A"], tensors[f"{m}.B"]) for m in modules},
                   scale=float(meta["scale"]), base_model=meta["base_model"],
                   about=json.loads(meta.get("about") or "{}"),
                   reward_set=meta.get("reward_set", "attributes"))

    @property
    def rank(self) -> int:
        return int(next(iter(self.weights.values()))[0].shape[0])


class ExpertSet:
    """The experts of one base model, by attribute (a base reward's name). Build it with
    :meth:`load` (a folder of ``*.safetensors``) or from :class:`Expert` objects; it is
    checked against the model it decodes with (:meth:`check`)."""

    def __init__(self, experts: Sequence[Expert]) -> None:
        if not experts:
            raise InvalidInput("an expert set needs at least one expert")
        names = [e.attribute for e in experts]
        if len(set(names)) != len(names):
            raise InvalidInput(f"two experts for one attribute: {names}")
        prints = {e.base_model for e in experts}
        if len(prints) != 1:
            raise InvalidInput("the experts were trained on different base models")
        sets = {e.reward_set for e in experts}
        if len(sets) != 1:
            raise InvalidInput(f"the experts serve different reward sets: {sorted(sets)}")
        self.reward_set = sets.pop()
        modules = set(experts[0].weights)
        if any(set(e.weights) != modules for e in experts):
            raise InvalidInput("the experts adapt different modules; train them together "
                               "(personalizer experts train)")
        self.experts = tuple(experts)
        self.names = tuple(names)
        self.base_model = prints.pop()
        # per module: stacked (E, r, in) and (E, out, r) with each expert's scale folded in
        self._stacked = {m: (torch.stack([e.weights[m][0] for e in experts]),
                             torch.stack([e.weights[m][1] * e.scale for e in experts]))
                         for m in sorted(modules)}
        self._cast: dict[tuple[str, Any, Any], tuple[torch.Tensor, torch.Tensor]] = {}
        self._hooked: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._token = uuid.uuid4().hex  # marks the modules this set hooked

    def __repr__(self) -> str:
        return f"ExpertSet({', '.join(self.names)})"

    def __len__(self) -> int:
        return len(self.experts)

    @classmethod
    def load(cls, folder: str | Path) -> ExpertSet:
        """Every ``*.safetensors`` expert in ``folder``."""
        files = sorted(Path(folder).glob("*.safetensors"))
        if not files:
            raise InvalidInput(f"no expert files (*.safetensors) in {folder}")
        return cls([Expert.load(f) for f in files])

    def serves(self, rewards: Any) -> bool:
        """Whether the experts' attributes are ``rewards``' base rewards of the same names
        (the reward set's id is the one they were trained for)."""
        return getattr(rewards, "id", None) == self.reward_set

    def fits(self, model: Any) -> bool:
        """Whether the experts were trained on ``model``."""
        return _fingerprint(model) == self.base_model

    def check(self, model: Any) -> None:
        """Refuse a model the experts were not trained on."""
        got = _fingerprint(model)
        if got != self.base_model:
            raise InvalidInput(
                f"these experts ({', '.join(self.names)}) were trained on another model "
                f"(fingerprint {self.base_model}; this one is {got}); train experts for it "
                "with `personalizer experts train` (see docs/how-to/experts.md)")

    def attach(self, model: Any) -> None:
        """Hook the adapted projections of ``model`` (once; checked first). The hooks do
        nothing outside :meth:`routed`."""
        with self._lock:
            if model in self._hooked:
                return
            self.check(model)
            try:
                modules = [(p, model.get_submodule(p)) for p in self._stacked]
            except AttributeError as exc:
                raise InvalidInput(f"the model lacks a module the experts adapt ({exc})") \
                    from None
            for path, module in modules:
                # a deep copy of a hooked model carries the hooks (and this marker) already
                marks = getattr(module, "_personalizer_experts", frozenset())
                if self._token not in marks:
                    module.register_forward_hook(self._hook(path))
                    module._personalizer_experts = marks | {self._token}
            self._hooked.add(model)

    @contextlib.contextmanager
    def routed(self, route: torch.Tensor) -> Iterator[None]:
        """Forwards inside add expert ``route[i]``'s update to row ``i`` (-1: none)."""
        rows = (route >= 0).nonzero().flatten()
        token = _ROUTE.set((self, rows, route[rows]))
        try:
            yield
        finally:
            _ROUTE.reset(token)

    def _weights(self, path: str, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (path, like.dtype, like.device)
        if key not in self._cast:
            a, b = self._stacked[path]
            self._cast[key] = (a.to(like.device, like.dtype), b.to(like.device, like.dtype))
        return self._cast[key]

    def _hook(self, path: str) -> Any:
        def hook(module: Any, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor | None:
            current = _ROUTE.get()
            if current is None or current[0] is not self or len(current[1]) == 0:
                return None
            x = args[0]
            rows, which = current[1].to(out.device), current[2].to(out.device)
            a, b = self._weights(path, x)
            low = torch.einsum("bsi,bri->bsr", x[rows], a[which])
            out = out.clone()
            out[rows] += torch.einsum("bsr,bor->bso", low, b[which])
            return out
        return hook

    def index(self, attribute: str) -> int:
        return self.names.index(attribute)


@dataclass(frozen=True)
class ExpertMix:
    """One row's experts: indices into ``experts`` and their weights (the person's
    relative coefficients times the strength). The row's logits are
    ``base + sum_e weight_e * (expert_e - base)``, each expert a row of the same forward."""

    experts: ExpertSet
    index: tuple[int, ...]
    weight: tuple[float, ...]

    def named(self) -> dict[str, float]:
        """Weight per attribute (for the steering record)."""
        return {self.experts.names[i]: round(float(w), 4)
                for i, w in zip(self.index, self.weight, strict=True)}
