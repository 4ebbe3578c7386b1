"""Where does a VideoMAE run's loss come from? Masked-patch loss split by how textured each patch is.

For a run's checkpoints (and step 0, the random init), on the test split: the share of masked tubes and of the
loss in each bucket of raw pixel std, the run's loss and the loss of predicting zero (the patch mean, which is
what a model on the plateau does). Buckets whose loss stays at predict-zero carry no signal the model found;
if they hold most of the loss, the gradients are mostly noise. Not run by CI.

    python benchmarks/mae_target_buckets.py --run runs/demo/run --batches 8
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from vidfm.data.config import build_dataset
from vidfm.data.datasets import collate
from vidfm.masking import make_mask
from vidfm.objectives.pixel import pixel_target
from vidfm.recipes import load_run_config
from vidfm.train.checkpoint import list_checkpoints, load_model_weights

BUCKETS = ((0.0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 1.0))  # raw [0, 1] pixel std, mean over channels


@torch.no_grad()
def bucket_losses(
    task: torch.nn.Module, cfg, batches: int, seed: int
) -> list[tuple[str, float, float, float, float]]:
    """Rows (bucket, share of tubes, share of predict-zero loss, model loss, predict-zero loss)."""
    task = task.eval()
    data = dataclasses.replace(cfg.data, short_side=cfg.augment.size)
    dataset = build_dataset(data, seed=seed, split="test", train=False, crop_square=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.batch_size, collate_fn=collate)
    g = torch.Generator().manual_seed(seed)
    err, zero, spread = [], [], []
    t, p = cfg.encoder.tubelet, task.encoder.patch
    for i, batch in enumerate(loader):
        if i == batches:
            break
        video = task.augment(batch["video"], train=False)  # [B,C,T,H,W] in [0, 1]
        mask = make_mask(cfg.mask, video.shape[0], task.encoder.grid, g, video.device)
        pred, target = task.reconstruct(video, mask)  # [B,Nm,P·C]
        raw = pixel_target(video, t, p, normalize=False, index=mask.masked)
        err.append((pred - target).square().mean(-1).flatten())
        zero.append(target.square().mean(-1).flatten())
        spread.append(raw.unflatten(-1, (-1, 3)).std(-2).mean(-1).flatten())  # [B·Nm]
    e, z, s = torch.cat(err), torch.cat(zero), torch.cat(spread)
    rows = [("all", 1.0, 1.0, e.mean().item(), z.mean().item())]
    for lo, hi in BUCKETS:
        sel = (s >= lo) & (s < hi)
        if sel.any():
            share = sel.float().mean().item()
            rows.append(
                (
                    f"[{lo}, {hi})",
                    share,
                    (z[sel].sum() / z.sum()).item(),
                    e[sel].mean().item(),
                    z[sel].mean().item(),
                )
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a VideoMAE run folder")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    cfg = load_run_config(args.run)
    print(f"run {args.run}: mask {cfg.mask.kind} {cfg.mask.ratio}, target_eps {cfg.target_eps}")
    print("| step | patch std | tubes | share of predict-zero loss | loss | predict-zero loss |")
    print("|---|---|---|---|---|---|")
    for step, ckpt in [(0, None), *list_checkpoints(args.run)]:
        torch.manual_seed(args.seed)
        task = cfg.build_task()
        if ckpt is not None:
            load_model_weights(ckpt, task)
        for name, share, zshare, loss, zloss in bucket_losses(task, cfg, args.batches, args.seed):
            print(f"| {step} | {name} | {share:.2f} | {zshare:.2f} | {loss:.3f} | {zloss:.3f} |", flush=True)


if __name__ == "__main__":
    main()
