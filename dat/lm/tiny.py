"""A tiny random chat model built in code: the real transformers code paths with no weights to fetch.

Tests and the `debug` config use it (model.name=tiny-random): it builds in a fraction of a second
and its replies are gibberish, so it checks plumbing, shapes and determinism, never quality.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<|pad|>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Hi! I'm selling my bike for $180. Would you take $80? Deal!",
    "I can offer $90 for it. That is my final price, thank you.",
    "Could you help me finish the report before Friday? Sure, happy to help.",
    "The heater is broken and I need it repaired this week, please.",
    "Great to see you! Let's volunteer at the food bank on Saturday morning.",
    "No, I don't agree. Goodbye, I am leaving the conversation now.",
]


def build_tiny_model(folder: Path, hidden_size: int = 64, seed: int = 0) -> Path:
    """Save a ~100k-parameter Llama and its tokenizer to ``folder`` and return the folder."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS * 20, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=False, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id,
        bos_token_id=fast.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    # Llama's init (std 0.02) makes a 2-layer model echo its last input token. Larger weights make the
    # reply depend on the whole context (and on a prefix), so tests can tell dialogues apart.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2:
                param.normal_(0.0, 1.0 if "embed" in name else 0.25)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder
