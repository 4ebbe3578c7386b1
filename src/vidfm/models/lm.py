"""A causal language model from HF transformers behind one small interface: embeddings in, next-token loss
and greedy generation out.

Meant for InternVideo2 stage 3 (video tokens prepended to an instruction, VideoChat2-style) and as the place the
Video-LaVIT language model plugs into (visual and motion token embeddings prepended the same way). The model is
any ``AutoModelForCausalLM`` folder (``path``), or — where none is installed, as on CPU test machines — a tiny
Llama built from :class:`LMConfig`'s sizes and trained here, with the packaged MiniLM word-piece tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

IGNORE = -100  # HF's ignored label


@dataclass
class LMConfig:
    """path: an HF causal-LM folder ("" = a tiny Llama from the sizes below, random init).
    tokenizer: a tokenizer folder ("" = ``path``'s, or MiniLM's word pieces for the tiny model).
    width, depth, heads, mlp, max_len: the tiny Llama. trainable: False freezes the LM (the bridge trains).
    """

    path: str = ""
    tokenizer: str = ""
    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp: int = 256
    max_len: int = 256
    trainable: bool = True


class CausalLM(nn.Module):
    """The LM and its tokenizer. ``width``: the hidden size prefix embeddings must have."""

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

        from vidfm.models.text import default_text_path

        tok_path = cfg.tokenizer or cfg.path or str(default_text_path())
        if not Path(tok_path).is_dir():
            raise FileNotFoundError(f"tokenizer folder {tok_path} does not exist")
        self.tokenizer = AutoTokenizer.from_pretrained(tok_path)
        if cfg.path:
            if not (Path(cfg.path) / "config.json").is_file():
                raise FileNotFoundError(f"{cfg.path} is not an HF model folder (no config.json)")
            self.model = AutoModelForCausalLM.from_pretrained(cfg.path)
        else:
            llama = LlamaConfig(
                vocab_size=len(self.tokenizer), hidden_size=cfg.width, num_hidden_layers=cfg.depth,
                num_attention_heads=cfg.heads, num_key_value_heads=cfg.heads, intermediate_size=cfg.mlp,
                max_position_embeddings=cfg.max_len, tie_word_embeddings=True,
            )  # fmt: skip
            self.model = AutoModelForCausalLM.from_config(llama)
        tok = self.tokenizer
        # BERT word pieces have no BOS/EOS: [CLS] starts and [SEP] ends a sequence.
        self.bos_id = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else self.eos_id
        self.width = self.model.get_input_embeddings().weight.shape[1]

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B,L] -> [B,L,H]."""
        return self.model.get_input_embeddings()(ids)

    def loss(self, embeds: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy: embeds [B,L,H], mask [B,L] (1 = real), labels [B,L] (IGNORE where not
        predicted; HF shifts them by one inside)."""
        return self.model(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, max_new_tokens: int = 16) -> list[list[int]]:
        """Greedy continuation of prefix embeddings [B,L,H] (no padding) until EOS: new token ids per sample."""
        x, done = prefix, torch.zeros(prefix.shape[0], dtype=torch.bool, device=prefix.device)
        out: list[list[int]] = [[] for _ in range(prefix.shape[0])]
        for _ in range(max_new_tokens):
            next_id = self.model(inputs_embeds=x).logits[:, -1].argmax(-1)  # [B]
            for i, t in enumerate(next_id.tolist()):
                if not done[i] and t != self.eos_id:
                    out[i].append(t)
            done |= next_id == self.eos_id
            if bool(done.all()):
                break
            x = torch.cat([x, self.embed(next_id[:, None])], dim=1)
        return out

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()
