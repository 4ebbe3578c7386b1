"""The EfficientNet-Lite0 recipes from the command line: cache the teacher's targets once, train from them."""

from __future__ import annotations

import json

import pytest

from vidfm.cli import main

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
pytest.importorskip("efficientnet_lite_pytorch", reason="the 'teachers' extra is not installed")

# A 1-block, 32-wide student at 32²; the teacher sees 32² at stride 4, the student's 8×8 grid... of 4-px
# patches: the point is the plumbing (grid alignment, cache, trainer), not the numbers.
SMALL = [
    "encoder.depth=1",
    "encoder.width=32",
    "encoder.heads=2",
    "encoder.img_size=32",
    "encoder.size=T/4",
    "augment.size=32",
    "data.short_side=32",
    "train.batch_size=2",
    "train.workers=0",
    "train.progress=false",
]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize(
    ("recipe", "teacher"),
    [
        ("umt:effnet", ["teacher.size=32", "teacher.stride=4"]),
        ("mvd:effnet", ["teachers.image_size=32", "teachers.image_stride=4", "decoder.depth=1"]),
    ],
)
def test_effnet_recipe_trains_from_cached_targets(tmp_path, recipe, teacher) -> None:
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(tmp_path / "digits", n=6, size=32, seed=0)
    common = [f"data.manifest={manifest}", *SMALL, *teacher]
    cache = tmp_path / "cache"
    args = [
        "data",
        "cache-targets",
        "--recipe",
        recipe,
        "--views",
        "1",
        "--workers",
        "0",
        "--out",
        str(cache),
    ]
    assert main(args + sets(*common)) == 0
    index = json.loads((cache / "cache.json").read_text())
    (name,) = index["teachers"]
    assert index["teachers"][name]["grid"][1:] == [8, 8]  # the teacher's map on the student's grid
    run = tmp_path / "run"
    train = ["train.steps=2", "train.warmup_steps=0", f"train.teacher_cache={cache}"]
    assert main(["pretrain", "--recipe", recipe, "--out", str(run)] + sets(*common, *train)) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and rows[-1]["loss"] > 0
