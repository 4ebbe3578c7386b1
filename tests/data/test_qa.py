"""Instructions and answers from label columns."""

from __future__ import annotations

import pytest

from vidfm.data.qa import QADataset, answer_text, row_values


class Items:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key):  # noqa: ANN001, ANN204
        index = key[1] if isinstance(key, tuple) else key
        return {"path": self.paths[index], "caption": "c"}


def test_questions_and_answers_from_the_manifest(tmp_path) -> None:  # noqa: ANN001
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,digit,motion\na.mp4,7,rotate_cw\nb.mp4,3,up\n")
    values = row_values(manifest, ["digit", "motion"])
    assert values[str(tmp_path / "a.mp4")] == {"digit": "7", "motion": "rotate cw"}
    qa = QADataset(
        Items([str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]),
        manifest,
        {"digit": "which digit?", "motion": "how?"},
    )
    seen = {(qa[(e, 0)]["instruction"], qa[(e, 0)]["answer"]) for e in range(20)}
    assert seen == {("which digit?", "7"), ("how?", "rotate cw")}  # both questions, each with its answer
    assert qa[(3, 1)] == qa[(3, 1)]  # a function of (seed, epoch, index)
    assert answer_text(" Zoom_In ") == "zoom in"
    with pytest.raises(ValueError, match="no column"):
        row_values(manifest, ["sound"])
