"""The audio encoder pools only real audio; the causal-LM wrapper learns an answer and generates it."""

from __future__ import annotations

import pytest
import torch

from vidfm.models.audio import AudioEncoder, AudioEncoderConfig

AUDIO = AudioEncoderConfig(width=32, depth=1, heads=2, max_frames=64)


def test_audio_encoder_pools_only_real_audio() -> None:
    torch.manual_seed(0)
    enc = AudioEncoder(AUDIO)
    fbank = torch.randn(2, 70, 64)  # 70 frames: cut to 64 = 4 time patches × 4 mel patches
    valid = torch.zeros(2, 70, dtype=torch.bool)
    valid[0, :20] = True  # clip 0: sound in the first 20 frames -> time patches 0 and 1
    out = enc(fbank, valid)
    assert out.tokens.shape == (2, 16, 32) and out.present.tolist() == [True, False]
    assert out.valid[0].view(4, 4).all(1).tolist() == [True, True, False, False]
    torch.testing.assert_close(out.pooled[0], out.tokens[0][out.valid[0]].mean(0))
    assert out.pooled[1].abs().sum() == 0  # no audio: zeros, flagged absent
    out.pooled[0].sum().backward()
    assert enc.patch_embed.weight.grad.abs().sum() > 0 and enc.pos_embed.grad.abs().sum() > 0


def test_causal_lm_learns_an_answer_after_prefix_embeddings_and_generates_it() -> None:
    pytest.importorskip("transformers")
    from vidfm.models.lm import IGNORE, CausalLM, LMConfig

    torch.manual_seed(0)
    try:
        lm = CausalLM(LMConfig(width=32, depth=1, heads=2, mlp=64))
    except (FileNotFoundError, OSError) as e:
        pytest.skip(f"the packaged MiniLM tokenizer is not installed ({e})")
    prefix = torch.randn(2, 3, lm.width)  # two different "video" prefixes, one prompt, two answers
    prompt = [lm.bos_id, *lm.ids("question: which digit? answer:")]
    answers = [[*lm.ids(" seven"), lm.eos_id], [*lm.ids(" three"), lm.eos_id]]
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    for _ in range(60):
        embeds, labels = [], []
        for i in range(2):
            ids = torch.tensor(prompt + answers[i])
            embeds.append(torch.cat([prefix[i], lm.embed(ids)]))
            labels.append(torch.tensor([IGNORE] * (3 + len(prompt)) + answers[i]))
        loss = lm.loss(
            torch.stack(embeds), torch.ones(2, len(labels[0]), dtype=torch.long), torch.stack(labels)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    said = [
        lm.decode(lm.generate(torch.cat([prefix[i], lm.embed(torch.tensor(prompt))])[None])[0])
        for i in range(2)
    ]
    assert said == ["seven", "three"]
