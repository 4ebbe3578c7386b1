"""Batched clip-embedding export for a folder (or list, or manifest) of videos, resumable.

Work is cut into fixed parts of ``part_size`` videos in a fixed order (the input list is written once to
``OUT.parts/inputs.txt`` and reused on resume); each finished part is written atomically to
``OUT.parts/part-NNNNN.npz``, so an interrupted export redoes at most one part. The final file is then
assembled from the parts:

- ``.npy``: float32 [N, D] embeddings, rows in the order of ``OUT.paths.txt`` (one path per line);
- ``.parquet``: one row per video with ``path`` and ``embedding`` columns (needs pyarrow).

A video that cannot be decoded is reported ("skipped"), listed in ``OUT.failed.txt`` and has no row; it never stops the
export (unless more than ``max_failure_fraction`` of the videos fail: then the data are wrong, not one file).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidfm.data.datasets import VIDEO_EXTENSIONS, DataError, VideoRecord, read_manifest
from vidfm.errors import UserError
from vidfm.utils import default_device, log, on_terminal


def list_videos(source: str | Path | list[str]) -> list[str]:
    """Video paths from a folder (recursive, sorted), a CSV manifest (its distinct paths, in order), a text
    file with one path per line, or a list of paths."""
    if isinstance(source, list):
        return [str(Path(p)) for p in source]
    path = Path(source)
    if path.is_dir():
        found = sorted(
            str(p) for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()
        )
        if not found:
            raise DataError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {path}")
        return found
    if path.suffix == ".csv":
        return list(dict.fromkeys(r.path for r in read_manifest(path)))
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return [str(path)]
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    raise UserError(f"{path}: not a folder, manifest, list or video")


class _Marked(torch.utils.data.Dataset):
    """Items of a VideoDataset with a label ``ok`` = 0 and a black clip when the asked video could not be
    decoded (the dataset substitutes another video in that case, which an export must never do)."""

    def __init__(self, dataset: torch.utils.data.Dataset, shape: tuple[int, ...]) -> None:
        self.dataset, self.shape = dataset, shape

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        path = self.dataset.records[i].path
        try:
            item = self.dataset[i]
            ok = item["index"] == i
        except DataError:  # this item and all its replacements failed
            ok = False
        if ok:
            return {**item, "labels": {"ok": 1}}
        return {"video": torch.zeros(self.shape, dtype=torch.uint8), "labels": {"ok": 0}, "caption": None,
                "index": i, "path": path}  # fmt: skip


@dataclass
class EmbedResult:
    out: Path
    count: int
    dim: int
    failed: list[str]


def embed_videos(
    source: str | Path | list[str],
    checkpoint: str | Path,
    out: str | Path,
    pool: str = "mean",
    clips: int = 1,
    crops: int = 1,
    batch_size: int = 16,
    part_size: int = 512,
    workers: int = 0,
    random_init: bool = False,
    max_failure_fraction: float = 0.5,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> EmbedResult:
    """Embed every video of ``source`` with the encoder of run ``checkpoint``; see the module docstring.

    Clips are decoded as the run's data config says (frames, stride, sampling) at its input size, centre
    cropped; ``clips`` × ``crops`` views are averaged (:func:`vidfm.eval.features.extract_features`).
    """
    from vidfm.data.datasets import VideoDataset
    from vidfm.data.sampling import SamplingConfig
    from vidfm.eval.features import extract_features
    from vidfm.io import atomic_write, atomic_write_text
    from vidfm.recipes import load_run_encoder

    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise UserError(f"--out must end in .npy or .parquet, got {out.name}")
    if out.suffix == ".parquet":
        _pyarrow()  # fail before hours of work, not after
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    inputs_file = parts / "inputs.txt"
    if inputs_file.is_file():
        paths = inputs_file.read_text().splitlines()
        if set(list_videos(source)) - set(paths):
            log.warning("%s: new videos since this export began are left out; use a new --out", source)
    else:
        paths = list_videos(source)
        atomic_write_text(inputs_file, "\n".join(paths) + "\n")
    if not paths:
        raise DataError(f"{source}: no videos to embed")

    encoder, cfg = load_run_encoder(checkpoint, random_init=random_init)
    size = cfg.augment.size
    sampling = SamplingConfig(mode=cfg.data.sampling, num_frames=cfg.data.num_frames, stride=cfg.data.stride)
    shape = (clips,) * (clips > 1) + (cfg.data.num_frames, size, size, 3)
    device = device or default_device()
    failed: list[str] = []
    n_parts = -(-len(paths) // part_size)
    bar = tqdm(total=len(paths), desc="embed", unit="video", disable=not on_terminal(progress))
    for k in range(n_parts):
        part_file = parts / f"part-{k:05d}.npz"
        chunk = paths[k * part_size : (k + 1) * part_size]
        if not part_file.is_file():
            dataset = VideoDataset(
                [VideoRecord(p) for p in chunk], sampling, short_side=size, views=clips, seed=0,
                max_failure_fraction=1.0, crop_square=crops == 1, train=False,
            )  # fmt: skip
            feats = extract_features(
                encoder, _Marked(dataset, shape), cfg.augment,
                batch_size=batch_size if crops == 1 else 1, crops=crops, pool=pool, workers=workers,
                device=device, progress=False,
            )  # fmt: skip
            ok = feats.labels["ok"].astype(bool)
            names = np.array(feats.paths)
            atomic_write(
                part_file,
                lambda tmp, f=feats, ok=ok, names=names: _save_npz(tmp, f.x[ok], names[ok], names[~ok]),
            )
        with np.load(part_file) as z:
            failed += [str(p) for p in z["failed"]]
        bar.update(len(chunk))
        if progress and bar.disable:  # not a terminal: a plain line per part
            log.info("embed: %d/%d videos, %d skipped", min((k + 1) * part_size, len(paths)), len(paths),
                     len(failed))  # fmt: skip
        if len(failed) > max_failure_fraction * (k + 1) * part_size and len(failed) > 10:
            raise DataError(f"{len(failed)} videos failed to decode so far, e.g. {failed[:5]}")
    bar.close()
    result = _assemble(parts, n_parts, out)
    atomic_write_text(out.with_name(out.name + ".failed.txt"), "".join(f"{p}\n" for p in failed))
    if failed:
        log.warning("%d of %d videos could not be decoded and were skipped (listed in %s.failed.txt)",
                    len(failed), len(paths), out.name)  # fmt: skip
    return dataclasses.replace(result, failed=failed)


def _save_npz(tmp: Path, x: np.ndarray, paths: np.ndarray, failed: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
        np.savez(f, x=x.astype(np.float32), paths=paths.astype(str), failed=failed.astype(str))


def _save_npy(tmp: Path, x: np.ndarray) -> None:
    with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a bare name
        np.save(f, x)


def _pyarrow():  # noqa: ANN202
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as exc:
        raise UserError("parquet output needs pyarrow (pip install pyarrow); or write .npy") from exc
    return pyarrow


def _assemble(parts: Path, n_parts: int, out: Path) -> EmbedResult:
    from vidfm.io import atomic_write, atomic_write_text

    xs, names = [], []
    for k in range(n_parts):
        with np.load(parts / f"part-{k:05d}.npz") as z:
            xs.append(z["x"])
            names += [str(p) for p in z["paths"]]
    x = np.concatenate(xs) if xs else np.zeros((0, 0), np.float32)
    if out.suffix == ".npy":
        atomic_write(out, lambda tmp: _save_npy(tmp, x))
        atomic_write_text(out.with_name(out.name + ".paths.txt"), "".join(f"{p}\n" for p in names))
    else:
        pa = _pyarrow()
        table = pa.table({"path": names, "embedding": list(x)})
        atomic_write(out, lambda tmp: pa.parquet.write_table(table, str(tmp)))
    return EmbedResult(out, len(names), int(x.shape[1]) if x.ndim == 2 else 0, [])
