"""The config a run folder records, one file per training segment, so the folder never disagrees with its weights.

``RUN/config.yaml`` is the config of the latest segment (what :func:`vidfm.recipes.load_run_config`
rebuilds the run from). ``RUN/configs/step-NNNNNNN.yaml`` is the config each segment trained with, named by
the step it started from; a segment that resumes with the same config as the one before writes none.

A resumed run may change its step budget (``train.steps``: extending a run is ordinary) and the settings
that cannot change the weights (decoding workers, logging, checkpoint cadence). Any other difference — an
lr, a mask ratio, a manifest — would leave ``config.yaml`` describing weights it did not train, so it is
refused with a one-line error naming the keys, unless forced: then the new config is written beside the old
one and the difference logged key by key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vidfm.errors import RunFolderError
from vidfm.io import atomic_write_text
from vidfm.utils import log

# TrainConfig fields a resumed run may change without --force: the step budget, and settings that do not
# change what is computed (the data order is a function of the seed, not of the number of workers; DDP,
# FSDP2, recomputed activations and compiled blocks run the same math).
BUDGET = ("steps",)
OPERATIONAL = (
    "workers", "progress", "log_every", "ckpt_every", "keep_last", "prefetch", "resume", "parallel",
    "activation_checkpointing", "compile",
)  # fmt: skip
# Per-process batch and accumulation may change together with the number of processes when the global
# batch (batch_size x accum_steps x processes) stays: a run resumes under another world size.
_BATCH = ("batch_size", "accum_steps")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``; lists stay values."""
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (old, new)}`` for every key whose value differs (a missing key counts as ``None``)."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _describe(diffs: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in diffs.items())


def segment_path(run_dir: Path, step: int) -> Path:
    return run_dir / "configs" / f"step-{step:07d}.yaml"


def _global_batch(config: dict[str, Any], section: str, world_size: int) -> Any:
    flat = flatten(config)
    return flat.get(section + "batch_size", 0) * flat.get(section + "accum_steps", 1) * world_size


def check_resume(
    run_dir: Path,
    config: dict[str, Any],
    step: int,
    force: bool,
    section: str = "train.",
    world_sizes: tuple[int, int] = (1, 1),
) -> tuple[dict[str, tuple[Any, Any]], list[str]]:
    """Compare ``config`` (a plain nested dict) with the config the run in ``run_dir`` was last trained
    with, for a resume at ``step``; returns the differences and the keys among them that need ``force``.
    ``section``: where the TrainConfig sits in ``config`` (``""`` for a bare TrainConfig);
    ``world_sizes``: processes (before, now).

    Raises :class:`vidfm.errors.RunFolderError` when the run is already past ``train.steps``, or when
    anything but the step budget and operational settings differs and ``force`` is off.
    """
    steps = flatten(config).get(section + "steps")
    if isinstance(steps, int) and step > steps:
        raise RunFolderError(
            f"{run_dir} has trained {step} steps, more than train.steps={steps}: give train.steps >= {step} "
            "to go on, or another --out for a new run"
        )
    saved = run_dir / "config.yaml"
    if not saved.is_file():  # a run folder from before configs were recorded: nothing to compare
        return {}, []
    old = yaml.safe_load(saved.read_text()) or {}
    diffs = differences(old, config)
    free = {section + k for k in BUDGET + OPERATIONAL}
    if _global_batch(old, section, world_sizes[0]) == _global_batch(config, section, world_sizes[1]):
        free |= {section + k for k in _BATCH}
    changed = {k: v for k, v in diffs.items() if k not in free}
    if changed and not force:
        raise RunFolderError(
            f"{run_dir} was trained with another config ({_describe(changed)}); resuming would mix the two: "
            "give another --out for a new run, or --force to go on and record the new config beside the old"
        )
    return diffs, sorted(changed)


def record(
    run_dir: Path,
    config: dict[str, Any],
    step: int,
    diffs: dict[str, tuple[Any, Any]],
    fresh: bool,
    forced: bool = False,
) -> None:
    """Write ``config.yaml`` and, for a fresh run or a changed config, ``configs/step-<step>.yaml``;
    ``diffs`` (from :func:`check_resume`) are logged, as a warning when ``forced``. ``config`` is the dict
    to save as it is."""
    folder = run_dir / "configs"
    segments = sorted(folder.glob("step-*.yaml")) if folder.is_dir() else []
    if fresh or diffs:
        if not fresh and not segments and (run_dir / "config.yaml").is_file():
            # A run folder from before per-segment configs: keep its first segment's before replacing it.
            folder.mkdir(exist_ok=True)
            atomic_write_text(segment_path(run_dir, 0), (run_dir / "config.yaml").read_text())
        for old in segments:
            # A fresh start replaces every segment; segments begun after the restart point no longer
            # describe any weights.
            if fresh or int(old.stem.split("-")[1]) > step:
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(segment_path(run_dir, step), yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
    if diffs:
        (log.warning if forced else log.info)(
            "resuming %s at step %d with a changed config%s: %s; each segment's config is in %s",
            run_dir, step, " (--force)" if forced else "", _describe(diffs), folder,
        )  # fmt: skip
