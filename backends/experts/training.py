"""Training attribute experts: preference pairs from the model's own answers, then DPO.

One expert per base reward: a LoRA adapter on the base model that prefers "more of" the
attribute while keeping the content. The pairs come from the base model itself: each prompt
(:func:`training_prompts`, the project's own everyday questions) is answered twice, once
under a request for more of the attribute and once under a request for less (or plainly),
and the request is then dropped: the expert learns to answer the bare question the way the
"more" answer did. Pairs are kept only where the attribute's scorer says the "more" answer
has more of it and neither answer is off-topic or repeats itself (:func:`build_pairs`).

Training (:func:`train_expert`) is TRL's DPO with a PEFT LoRA config (the ``[experts]``
extra), the reference log-probs computed once. Decoding with an expert needs neither: the
adapter's two matrices per projection are applied by :mod:`.lora`.

Shipped experts are trained only on this data (``bench/train_experts.py``). Training on an
app's own preference history (:meth:`Personalizer.export_preferences`) is the app's opt-in
choice: a deleted person's influence stays in an expert until it is trained again.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from personalizer._optional import require
from personalizer.errors import InvalidInput

__all__ = ["STYLES", "Style", "build_pairs", "orient_pairs", "train_expert", "train_experts",
           "training_prompts"]

_LIST_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+\S", re.MULTILINE)
_MARKER = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_OPENINGS = ("Great question!", "I'm so glad you asked!", "Happy to help with this!",
             "Oh, this is a lovely thing to work on!", "What a good idea to ask!",
             "I'd be delighted to help!", "Good for you for looking into this!",
             "This is a fun one!", "You're off to a wonderful start by asking!",
             "Thanks for asking, I love this topic!")
_CLOSINGS = ("Good luck, you've got this!", "I hope this helps, and enjoy!",
             "Have fun with it!", "I hope it goes wonderfully for you!", "You'll do great!",
             "Take care, and enjoy the process!", "Wishing you the best with it!",
             "I'm sure you'll do a fantastic job!", "Enjoy, and be kind to yourself!",
             "Happy days ahead, and good luck!")


@dataclass(frozen=True)
class Style:
    """How to ask the base model for more and for less of one attribute (None: no request,
    the model's own answer), and how much the attribute's scorer must separate the two."""

    more: str | None
    less: str | None
    margin: float


# The attributes with an expert, by base-reward name (the default reward set's).
STYLES: dict[str, Style] = {
    # SmolLM2 answers a bare question at length (to the token limit), and briefly when asked
    "verbosity": Style(more=None, less="Answer in one or two short sentences.", margin=0.4),
    "structure": Style(more="Answer as a bulleted list of short points.",
                       less="Answer in one short paragraph of plain prose, with no list.",
                       margin=0.3),
    # SmolLM2 asked for warmth loses the answer: the warm side is its plain answer with a
    # warm opening and closing (_warm_frame), the other side the plain answer itself
    "warmth": Style(more=None, less=None, margin=0.15),
    # the same frames are informal (exclamations, contractions): the formal side is the
    # plain answer, the other the framed one
    "formality": Style(more=None, less=None, margin=1.0),
}


def training_prompts() -> list[str]:
    """The project's own training questions (none is a question-bank or benchmark
    prompt)."""
    text = resources.files("personalizer.backends.experts").joinpath(
        "data/prompts.json").read_text(encoding="utf-8")
    return list(json.loads(text)["prompts"])


def _repeats(text: str) -> bool:
    from personalizer.backends.rewards.quality import sentences

    parts = [p.lower() for p in sentences(text) if len(p) > 12]
    return len(parts) != len(set(parts))


def _until_repeat(text: str) -> str:
    """A list answer up to its first repeated item (greedy lists loop)."""
    seen: set[str] = set()
    keep: list[str] = []
    for line in text.splitlines():
        item = _MARKER.sub("", line).strip().lower()
        if item and item in seen:
            break
        seen.add(item)
        keep.append(line)
    return "\n".join(keep).strip()


def _warm_frame(answer: str, i: int) -> str:
    """``answer`` with a warm opening and closing (seeded by ``i``): SmolLM2 asked for a
    warm answer loses the answer, so the warm side keeps the plain answer's content."""
    return f"{_OPENINGS[i % len(_OPENINGS)]} {answer}\n\n{_CLOSINGS[(i * 7) % len(_CLOSINGS)]}"


def _ask(question: str, request: str | None) -> list[dict[str, str]]:
    content = question if request is None else f"{question}\n\n{request}"
    return [{"role": "user", "content": content}]


def build_pairs(generator: Any, attribute: str, prompts: Sequence[str], *,
                max_new_tokens: int = 110, batch: int = 32,
                cache: dict[tuple[str, str | None], str] | None = None,
                progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """DPO pairs for ``attribute`` (a key of :data:`STYLES`) from ``generator``'s own greedy
    answers: ``{"prompt": [user turn], "chosen": [assistant turn], "rejected": [...]}``
    (TRL's conversational preference format), the chosen answer the one with more of the
    attribute. A pair is kept when the attribute's scorer separates the answers by the
    style's margin, both answers are on topic (half the generator's quality floor, when it
    has one) and neither repeats a sentence (a list is cut at its first repeated item).
    ``cache`` keeps answers by (question, request) across attributes."""
    from personalizer.backends.rewards.attributes import attribute_scorers

    if attribute not in STYLES:
        raise InvalidInput(f"no expert recipe for {attribute!r}: use one of {sorted(STYLES)}")
    style = STYLES[attribute]
    scorer = {s.name: s for s in attribute_scorers()}[attribute]
    quality = getattr(generator, "quality", None)
    cache = {} if cache is None else cache
    pairs: list[dict[str, Any]] = []
    for start in range(0, len(prompts), batch):
        chunk = list(prompts[start:start + batch])
        answers = {}
        for side, request in (("more", style.more), ("less", style.less)):
            todo = [q for q in chunk if (q, request) not in cache]
            if todo:
                gens = generator.generate_batch([(_ask(q, request), None) for q in todo],
                                                max_new_tokens=max_new_tokens)
                cache.update({(q, request): g.text.strip() for q, g in zip(todo, gens)})
            answers[side] = [cache[(q, request)] for q in chunk]
        for i, q in enumerate(chunk):
            more, less = answers["more"][i], answers["less"][i]
            if attribute == "structure":
                more = _until_repeat(more)
            elif attribute == "warmth":
                more = _warm_frame(more, start + i)
            elif attribute == "formality":
                less = _warm_frame(less, start + i)
            if not more or not less or _repeats(more) or _repeats(less):
                continue
            if float(scorer.fn(more)) - float(scorer.fn(less)) < style.margin:
                continue
            if attribute == "structure" and (len(_LIST_LINE.findall(more)) < 3
                                             or _LIST_LINE.search(less)):
                continue
            # a short answer is less on topic by nature: half the floor
            if quality is not None and \
                    min(quality.score(q, [more, less])) < 0.5 * quality.floor:
                continue
            pairs.append({"prompt": _ask(q, None),
                          "chosen": [{"role": "assistant", "content": more}],
                          "rejected": [{"role": "assistant", "content": less}]})
        progress(f"{attribute}: {min(start + batch, len(prompts))}/{len(prompts)} prompts, "
                 f"{len(pairs)} pairs kept")
    return pairs


def train_expert(generator: Any, attribute: str, pairs: Sequence[dict[str, Any]],
                 path: str | Path, *, rank: int = 8, alpha: int = 16, epochs: float = 2.0,
                 learning_rate: float = 5e-4, beta: float = 0.1, batch_size: int = 8,
                 max_length: int = 160, seed: int = 0, dtype: str = "bfloat16",
                 progress: bool = True) -> Path:
    """Train the expert for ``attribute`` on ``pairs`` by DPO (TRL, a PEFT LoRA of ``rank``
    on the attention projections; reference log-probs computed once) and save it to
    ``path`` (:class:`~.lora.Expert` format, stamped with the base model's fingerprint).
    ``generator``'s model is copied, never changed."""
    datasets = require("datasets", extra="experts", feature="training experts")
    peft = require("peft", extra="experts", feature="training experts")
    trl = require("trl", extra="experts", feature="training experts")
    from personalizer.backends.experts.lora import Expert

    if len(pairs) < 8:
        raise InvalidInput(f"{len(pairs)} pairs are too few to train an expert (at least 8)")
    model = copy.deepcopy(generator.model).train()
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0,
                             target_modules=list(Expert.TARGETS), task_type="CAUSAL_LM")
    on_cpu = str(generator.device) == "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        args = trl.DPOConfig(
            output_dir=tmp, per_device_train_batch_size=batch_size, num_train_epochs=epochs,
            learning_rate=learning_rate, beta=beta, max_length=max_length,
            precompute_ref_log_probs=True, lr_scheduler_type="cosine", warmup_steps=2,
            logging_steps=5, save_strategy="no", report_to=[], seed=seed, use_cpu=on_cpu,
            bf16=not on_cpu, disable_tqdm=not progress, dataloader_num_workers=0)
        trainer = trl.DPOTrainer(model=model, args=args,
                                 train_dataset=datasets.Dataset.from_list(list(pairs)),
                                 processing_class=generator.tokenizer, peft_config=config)
        trainer.train()
        state = peft.get_peft_model_state_dict(trainer.model)
    expert = Expert.from_peft_state(attribute, state, rank=rank, alpha=alpha,
                                    base_model=generator.model, dtype=dtype,
                                    about={"pairs": len(pairs), "epochs": epochs,
                                           "learning_rate": learning_rate, "beta": beta,
                                           "seed": seed, "max_length": max_length})
    return expert.save(path)


def orient_pairs(records: Sequence[dict[str, Any]], attribute: str) -> list[dict[str, Any]]:
    """Pairs for ``attribute``'s expert from any DPO records (an app's own history:
    :meth:`Personalizer.export_preferences`): each pair is ordered by the attribute's scorer
    (the answer with more of it chosen, whoever preferred which), and pairs its scorer does
    not separate by the style's margin are left out."""
    from personalizer.backends.rewards.attributes import attribute_scorers

    if attribute not in STYLES:
        raise InvalidInput(f"no expert recipe for {attribute!r}: use one of {sorted(STYLES)}")
    fn = {s.name: s for s in attribute_scorers()}[attribute].fn
    out = []
    for i, r in enumerate(records):
        try:
            a, b = r["chosen"][-1]["content"], r["rejected"][-1]["content"]
            prompt = list(r["prompt"])
        except (KeyError, IndexError, TypeError):
            raise InvalidInput(f"record {i} is not a DPO record (prompt, chosen, rejected as "
                               "chat turns)") from None
        gap = float(fn(a)) - float(fn(b))
        if abs(gap) >= STYLES[attribute].margin:
            more, less = (a, b) if gap > 0 else (b, a)
            out.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": more}],
                        "rejected": [{"role": "assistant", "content": less}]})
    return out


def train_experts(generator: Any, folder: str | Path,
                  attributes: Sequence[str] = tuple(STYLES), *,
                  prompts: Sequence[str] | None = None,
                  records: Sequence[dict[str, Any]] | None = None,
                  pairs_folder: str | Path | None = None, epochs: float = 2.0, seed: int = 0,
                  progress: Callable[[str], None] = print) -> list[Path]:
    """Train one expert per attribute for ``generator``'s model into ``folder``
    (``<attribute>.safetensors``; :meth:`ExpertSet.load(folder) <.lora.ExpertSet.load>`
    reads them). The pairs come from the model's own answers to ``prompts`` (default: the
    project's :func:`training_prompts`), or, opt-in, from ``records`` (DPO records such as
    an app's exported history, oriented per attribute by :func:`orient_pairs`). Resumable:
    an attribute whose file exists is skipped; with ``pairs_folder`` the pairs are kept
    there as JSONL (``pairs-<attribute>.jsonl``) and reused."""
    import time

    folder = Path(folder)
    unknown = [a for a in attributes if a not in STYLES]
    if unknown:
        raise InvalidInput(f"no expert recipe for {unknown}: use some of {sorted(STYLES)}")
    questions = list(prompts) if prompts is not None else training_prompts()
    cache: dict[tuple[str, str | None], str] = {}
    done = []
    for attribute in attributes:
        target = folder / f"{attribute}.safetensors"
        if target.exists():
            progress(f"{attribute}: {target} exists, skipped")
            done.append(target)
            continue
        t0 = time.perf_counter()
        kept = None if pairs_folder is None else Path(pairs_folder) / f"pairs-{attribute}.jsonl"
        if kept is not None and kept.exists():
            pairs = [json.loads(line) for line in kept.read_text("utf-8").splitlines()]
        elif records is not None:
            pairs = orient_pairs(records, attribute)
        else:
            pairs = build_pairs(generator, attribute, questions, cache=cache,
                                progress=progress)
        if kept is not None and not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_text("".join(json.dumps(p) + "\n" for p in pairs), "utf-8")
        t1 = time.perf_counter()
        progress(f"{attribute}: {len(pairs)} pairs ({t1 - t0:.0f} s); training")
        train_expert(generator, attribute, pairs, target, epochs=epochs, seed=seed)
        progress(f"{attribute}: trained in {time.perf_counter() - t1:.0f} s -> {target} "
                 f"({target.stat().st_size / 1e6:.2f} MB)")
        done.append(target)
    return done
