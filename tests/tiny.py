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
