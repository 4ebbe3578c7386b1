"""Small data and a task for the distributed tests: transformer blocks (so FSDP2 shards them and
activation checkpointing wraps them), a frozen teacher, and a contrastive term over ranks."""

from __future__ import annotations

import os
import socket

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vidfm.data.transforms import AugmentConfig
from vidfm.layers.frozen import Frozen
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.tasks.mvd import MVDTask
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.teachers.vit import ViTTeacher
from vidfm.train.distributed import gather_with_grad

T, SIDE, C = 2, 8, 3
SMALL = dict(size="T/8", depth=1, width=32, heads=2, img_size=32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_gloo(rank: int, world: int, port: int) -> None:
    """Join a gloo group through the same environment torchrun sets (read by ``init_distributed``)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)


class FrozenLinear(Frozen, nn.Linear):
    """A linear map declared frozen (its parameters keep the names ``weight``/``bias``)."""


class Clips(Dataset):
    """Item ``i`` of epoch ``e`` is a fixed function of ``(e, i)``: any process sees the same data."""

    def __init__(self, n: int = 16) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(1000 * self.epoch + index)
        return {"video": torch.randint(0, 256, (T, SIDE, SIDE, C), generator=g, dtype=torch.uint8)}


def collate(items: list[dict]) -> dict:
    return {"video": torch.stack([it["video"] for it in items])}


class ContrastiveToyTask(nn.Module):
    """Two heads over a 2-block encoder: a regression to a frozen teacher plus an InfoNCE whose negatives
    are every rank's samples (``gather_with_grad``). Per-sample and free of randomness, so the mean over
    ranks of the per-rank losses equals the loss of one process on the concatenated batch."""

    def __init__(self) -> None:
        super().__init__()
        cfg = EncoderConfig(size="T/4", depth=2, width=16, heads=2, tubelet=1, num_frames=T, img_size=SIDE)
        self.encoder = VideoEncoder(cfg)
        self.head_a, self.head_b = nn.Linear(16, 8), nn.Linear(16, 8)
        self.teacher = FrozenLinear(C, 8)  # declared frozen: neither optimised nor saved

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = batch["video"].permute(0, 4, 1, 2, 3).float() / 255  # [B,C,T,H,W]
        tokens = self.encoder(video).tokens  # [B,N,16]
        za = self.head_a(tokens.mean(1))  # [B,8]
        zb = F.normalize(self.head_b(tokens.amax(1)), dim=-1)  # [B,8]
        with torch.no_grad():
            target = self.teacher(video.mean((2, 3, 4)))
        regress = (za - target).pow(2).mean()
        all_b = gather_with_grad(zb)  # [world·B, 8]
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        labels = torch.arange(za.shape[0]) + rank * za.shape[0]
        nce = F.cross_entropy(F.normalize(za, dim=-1) @ all_b.T / 0.1, labels)
        return {"loss": regress + nce, "regress": regress.detach(), "nce": nce.detach()}


def mvd_task(targets: TargetSource = LIVE) -> MVDTask:
    """A tiny MVD task over 4x32² clips: random image (width 32) and video (width 48) ViT teachers, from
    ``targets`` as a recipe asks for them."""

    def image_teacher() -> ViTTeacher:
        torch.manual_seed(1)
        return ViTTeacher(VideoEncoder(EncoderConfig(**SMALL, tubelet=1, num_frames=1, cls_token=True)))

    def video_teacher() -> ViTTeacher:
        torch.manual_seed(2)
        return ViTTeacher(VideoEncoder(EncoderConfig(**{**SMALL, "width": 48}, tubelet=2, num_frames=4)))

    image = targets.teacher("teacher_image", image_teacher)
    video = targets.teacher("teacher_video", video_teacher)
    torch.manual_seed(0)
    encoder = EncoderConfig(**SMALL, tubelet=2, num_frames=4, pos_embed="sincos_3d")
    augment = AugmentConfig(size=32, flip_prob=0.5)
    return MVDTask(encoder, DecoderConfig(depth=1), MaskConfig("tube", 0.75), augment, image, video)
