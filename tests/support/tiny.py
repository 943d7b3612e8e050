"""Tiny transformers models and a tokenizer built locally: no hub, milliseconds per call."""

from __future__ import annotations

import functools

import torch

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Sleep well: keep a fixed bedtime and avoid screens before bed.",
    "Here are three tips:\n- drink water\n- walk daily\n- rest well",
    "I think it might perhaps be a good idea, but it depends.",
    "Absolutely! That is wonderful, great and lovely news for you.",
    "The algorithm uses a transformer with attention and a cache.",
    "For example, such as eggs, for instance bread. e.g. rice",
    "Hello! How are you today? I am fine, thank you.",
] * 4


@functools.lru_cache(maxsize=None)
def tokenizer():  # noqa: ANN201
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")


def gpt2(seed: int = 0, n_layer: int = 2, n_embd: int = 64, **kw):  # noqa: ANN201
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = tokenizer()
    kw.setdefault("vocab_size", len(tok))
    kw.setdefault("n_positions", 512)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id, **kw)
    return GPT2LMHeadModel(cfg).eval()


def llama(seed: int = 0):  # noqa: ANN201
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = tokenizer()
    cfg = LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok),
                      max_position_embeddings=512, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


def gpt2_classifier(num_labels: int = 1, seed: int = 0, **kw):  # noqa: ANN201
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(seed)
    tok = tokenizer()
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=len(tok), n_positions=512,
                     num_labels=num_labels, bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kw)
    return GPT2ForSequenceClassification(cfg).eval()


@functools.lru_cache(maxsize=None)
def trained_gpt2():  # noqa: ANN201
    """A tiny GPT-2 trained for a few seconds to answer in the corpus's sentences
    ("user: ...\\nassistant: <sentences></s>"), so that decoding meets finished sentences,
    list lines and an end of turn, as a real model's answers do."""
    return _answering(gpt2(seed=11, n_layer=2, n_embd=64))


@functools.lru_cache(maxsize=None)
def trained_llama():  # noqa: ANN201
    """A tiny Llama (q/k/v/o projections, as LoRA experts adapt) trained as
    :func:`trained_gpt2` is."""
    return _answering(llama(seed=11))


def _answering(model):  # noqa: ANN001, ANN202
    tok = tokenizer()
    model = model.train()
    sentences = [s for line in dict.fromkeys(CORPUS) for s in line.split("\n")]
    questions = ["Hello there", "Drink water", "Tell me about sleep", "How are you today?",
                 "Any tips?", "What should I do?"]
    rng = torch.Generator().manual_seed(0)
    texts = []
    for i in range(32):
        n = 1 + i % 4
        picked = [sentences[int(j)] for j in torch.randint(len(sentences), (n,), generator=rng)]
        texts.append(f"user: {questions[i % len(questions)]}\nassistant: {' '.join(picked)}"
                     f"{tok.eos_token}")
    batch = tok(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
