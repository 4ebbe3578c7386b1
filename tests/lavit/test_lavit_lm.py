"""The Video-LaVIT LM: recipe, sequences, training through the trainer, ``vidfm caption`` and ``vidfm generate``."""

from __future__ import annotations

import pytest
import torch

from vidfm.cli import main
from vidfm.config import apply_overrides
from vidfm.data.decode import probe
from vidfm.lavit.language import pair_sequence, video_span
from vidfm.recipes import get_recipe
from vidfm.recipes.lavit_lm import load_video_lavit


def _cfg(runs, *extra: str):
    sets = [f"data.manifest={runs['manifest']}", "data.split=none", f"motion_run={runs['motion']}",
            f"keyframe_run={runs['keyframe']}", f"detokenizer_run={runs['detokenizer']}", *extra]  # fmt: skip
    return apply_overrides(get_recipe("lavit_lm:tiny"), sets).prepare()


def test_prepare_resolves_words_and_token_layout(runs):
    cfg = _cfg(runs)
    assert "moving" in cfg.words and "3" in cfg.words or "handwritten" in cfg.words
    assert (cfg.visual_codes, cfg.num_visual, cfg.motion_codes, cfg.num_motion) == (512, 64, 256, 8)
    with pytest.raises(ValueError, match="max_len"):
        _cfg(runs, "lm.max_len=32")
    with pytest.raises(ValueError, match="motion_run"):
        apply_overrides(get_recipe("lavit_lm:tiny"), [f"data.manifest={runs['manifest']}"]).prepare()


@pytest.fixture(scope="module")
def pairs(runs):
    cfg = _cfg(runs)
    return cfg, cfg.build_dataset()


def test_pair_sequences_in_both_orders(pairs):
    cfg, ds = pairs
    assert len(ds) == 6  # one clip per video, one caption per clip
    item = ds[0]
    assert item["visual"].shape == (64,) and item["motion"].shape == (8,)
    task = cfg.build_task()
    v = task.vocab
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in item}
    ids, mask, target = task.sequences(batch, torch.tensor([True, False]))
    n_text = int(batch["text_len"][0])
    gen = ids[0, : int(mask[0].sum())]
    assert gen[0] == task.bos_id and gen[-1] == task.eos_id
    assert gen[1 + n_text] == v.marker("<visual>") and gen[-2] == v.marker("</motion>")
    assert torch.equal(v.decode("motion", gen[-10:-2]), batch["motion"][0])
    und = ids[1, : int(mask[1].sum())]
    assert und[1] == v.marker("<visual>") and und[1 + 66] == v.marker("<motion>")
    assert torch.equal(v.decode("visual", und[2:66]), batch["visual"][1])
    assert (target == (mask & (torch.arange(ids.shape[1]) > 0))).all()  # loss_on "all"
    second = apply_overrides(cfg, ["loss_on=second"]).build_task()
    _, _, t2 = second.sequences(batch, torch.tensor([True, False]))
    assert int(t2[1].sum()) == int(batch["text_len"][1]) + 1  # understanding: the caption and <eos>
    assert int(t2[0].sum()) == 64 + 8 + 4 + 1  # generation: the clip span and <eos>


def test_pair_sequence_helpers_reject_out_of_range_codes(pairs):
    task = pairs[0].build_task()
    with pytest.raises(ValueError, match="motion ids"):
        video_span(task.vocab, None, torch.tensor([256]))
    ids, start = pair_sequence(torch.tensor([7, 8]), torch.tensor([40, 41]), 1, 2, generation=False)
    assert ids.tolist() == [1, 40, 41, 7, 8, 2] and start == 3


def test_task_fits_a_batch(pairs):
    cfg, ds = pairs
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}
    torch.manual_seed(0)
    task = cfg.build_task().train()
    opt = torch.optim.AdamW(task.parameters(), lr=cfg.train.lr)
    losses = []
    for _ in range(8):
        out = task(batch, torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def lm_run(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "lm"
    sets = [f"data.manifest={runs['manifest']}", "data.split=none", f"motion_run={runs['motion']}",
            f"keyframe_run={runs['keyframe']}", f"detokenizer_run={runs['detokenizer']}", "train.steps=3",
            "train.batch_size=4", "train.warmup_steps=0", "train.progress=false"]  # fmt: skip
    args = ["pretrain", "--recipe", "lavit_lm:tiny", "--out", str(out)]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    return out


def test_run_reloads_and_generates_the_clip_layout(lm_run):
    vl, cfg = load_video_lavit(lm_run)
    gen = torch.Generator().manual_seed(0)
    visual, motion = vl.generate("a 3 moving to the left", 3, temperature=1.0, top_k=50, generator=gen)
    assert visual.shape == (3, 64) and motion.shape == (3, 8)
    assert 0 <= int(visual.min()) and int(visual.max()) < 512 and int(motion.max()) < 256
    # Captions of different lengths batch by length; rows keep the captions' order (greedy: as one by one).
    prompts = ["a 3 moving to the left", "a 4", "a 5 zooming in"]
    bv, bm = vl.generate(prompts, 2, temperature=0)
    assert bv.shape == (6, 64) and bm.shape == (6, 8)
    for i, p in enumerate(prompts):
        ov, om = vl.generate(p, 1, temperature=0)
        assert torch.equal(bv[2 * i : 2 * i + 2], ov.expand(2, -1)) and torch.equal(bm[2 * i + 1], om[0])
    caps = vl.caption(visual, motion, max_len=6)
    assert len(caps) == 3 and all(w in cfg.words for c in caps for w in c.split())
    assert all(len(c.split()) <= 6 for c in vl.prior_captions(4, max_len=6, generator=gen))
    with pytest.raises(ValueError, match="visual tokens"):
        vl.caption(None, motion)
    with pytest.raises(ValueError, match="no words"):
        vl.generate("   ")


def test_caption_and_generate_commands(runs, lm_run, tmp_path, capsys):
    assert main(["caption", str(runs["video"]), "--checkpoint", str(lm_run)]) == 0
    start, _ = capsys.readouterr().out.strip().split("\t")
    assert start == "0"
    clip = tmp_path / "clip.mp4"
    assert main(["generate", "a 3 moving to the left", "--checkpoint", str(lm_run), "--out", str(clip),
                 "--steps", "2", "--tokens-out", str(tmp_path / "t.json")]) == 0  # fmt: skip
    info = probe(clip)
    assert info.num_frames == 16 and (info.width, info.height) == (32, 32)
    capsys.readouterr()
    # User mistakes: one line on stderr, exit 2 (vidfm.errors.UserError).
    assert main(["generate", "", "--checkpoint", str(lm_run), "--out", str(clip)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidfm generate: error: ") and "no words" in err and "\n" not in err
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["caption", str(bad), "--checkpoint", str(lm_run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vidfm caption: error: ") and "bad.mp4" in err and "\n" not in err
    assert main(["caption", str(runs["video"]), "--checkpoint", str(runs["motion"])]) == 2
    assert "not a lavit_lm run" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: a handful of clips per class
def test_generation_benchmark_runs_end_to_end(runs, lm_run, tmp_path, capsys, monkeypatch):
    """benchmarks/lavit_generate.py: LM -> tokens -> detokenizer -> pixels, judged by classifiers on real clips."""
    import importlib.util
    from pathlib import Path

    from vidfm.data.digits import make_digits_motion

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "lavit_generate.py"
    monkeypatch.syspath_prepend(str(script.parent))  # it imports its sibling benchmarks
    spec = importlib.util.spec_from_file_location("lavit_generate", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    manifest = make_digits_motion(tmp_path / "digits", n=64, seed=1)  # enough per class for a probe
    strip = tmp_path / "strip.png"
    args = ["--lm-run", str(lm_run), "--detokenizer-run", str(runs["detokenizer"]), "--manifest", str(manifest),
            "--clips", "4", "--steps", "2", "--strip", str(strip)]  # fmt: skip
    assert bench.main(args) == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| ")]
    assert lines[0] == "| clips | digit recognised | motion recognised | both |"
    rows = {
        r[0]: [float(x) for x in r[1:]] for r in ([c.strip() for c in x.split("|")[1:-1]] for x in lines[1:])
    }
    assert list(rows)[:4] == [
        "real test clips (the classifiers' ceiling)",
        "the clips' own tokens, detokenized (no LM)",
        "LM, from the clip's caption",
        "LM, scored against a shuffled caption",
    ]
    assert all(0.0 <= v <= 1.0 for r in rows.values() for v in r)
    assert all(r[2] <= min(r[0], r[1]) for r in rows.values())  # "both" never exceeds either
    assert strip.stat().st_size > 0
