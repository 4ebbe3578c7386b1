"""InternVideo2 stage 2: video, audio and text aligned (paper §3.2), on UMT stage 2's parts.

L = β1·L_CON + β2·L_MAC + β3·L_MLM over the pairs {video, caption} and {video + audio, caption of video and
audio} (the paper's "text of video + audio + speech"; :class:`vidfm.data.audio.AudioVideoDataset` writes it
from the manifest's sound names):

- CON: :func:`~vidfm.objectives.contrastive.vtc_loss` for each pair; the video + audio embedding is the sum of
  the video and audio projections (the audio term is zero for a clip without audio, so that clip falls back to
  its video embedding);
- MAC: video-text matching through the cross-modal decoder, one two-way head per pair (``vtm_head`` for
  video, ``vtm_head_av`` for video + audio); for the second pair the decoder attends to the video tokens
  followed by the audio tokens mapped to the video width, zeroed where the clip has no audio;
- MLM: captions masked BERT-style, decoded against the video tokens (UMT's).

The audio encoder (:class:`~vidfm.models.audio.AudioEncoder`) is frozen by default, as the paper's first phase
("audio encoder frozen first"). The paper's second phase, unmasked post-pretraining with the video encoder
frozen, is ``video_frozen`` with a mask ratio of 0 (recipe variant ``internvideo2_stage2:tiny-post``): the
encoder then runs in eval mode without gradients and is saved unchanged with the run. The paper initialises
the audio encoder from BEATs, whose weights do not load into vidfm's AST-layout encoder: a frozen audio
encoder here is a random projection of the fbank patches.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig
from vidfm.layers.frozen import FrozenModule
from vidfm.masking import MaskConfig
from vidfm.models.audio import AudioEncoder, AudioEncoderConfig, AudioOutput
from vidfm.models.encoder import EncoderConfig
from vidfm.models.text import TextEncoderConfig
from vidfm.objectives.contrastive import vtc_loss
from vidfm.tasks.clip_image import captions_of, video_ids
from vidfm.tasks.umt import unmasked_alignment
from vidfm.tasks.umt_stage2 import FusionConfig, LossWeights, UMTStage2Task
from vidfm.utils import own_seed


class InternVideo2Stage2Task(UMTStage2Task):
    """UMT stage 2's student, text encoder, projections, decoder and heads (without its teacher) + the audio
    encoder, its projection and the video + audio matching head.

    Args:
        encoder, mask, augment, text, fusion, embed_dim, temperature, mlm_prob, hard_negatives: as
            :class:`~vidfm.tasks.umt_stage2.UMTStage2Task`.
        weights: β of CON (``vtc``), MAC (``vtm``) and MLM (``mlm``); ``uta`` must be 0 (no teacher here).
        audio: the audio encoder's config. audio_trainable: train it too (False: frozen, never saved).
        video_frozen: hold the video encoder fixed (the paper's post-pretraining phase): eval mode, no
            gradients, still saved with the run (it is the run's encoder).
        audio_seed: the seed of the audio encoder's initial weights, drawn from their own generator: a frozen
            random encoder is never saved, so a run re-opened later (evaluation, resume) rebuilds the same one
            whatever else the process drew before.
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        text: TextEncoderConfig,
        fusion: FusionConfig,
        audio: AudioEncoderConfig,
        embed_dim: int = 512,
        temperature: float = 0.07,
        weights: LossWeights | None = None,
        mlm_prob: float = 0.5,
        hard_negatives: bool = True,
        audio_trainable: bool = False,
        audio_seed: int = 0,
        video_frozen: bool = False,
    ) -> None:
        weights = weights or LossWeights(uta=0.0)
        if weights.uta != 0:
            raise ValueError("InternVideo2 stage 2 has no teacher alignment: weights.uta must be 0")
        super().__init__(
            encoder=encoder,
            mask=mask,
            augment=augment,
            teacher=None,  # no UMT alignment: uta is 0
            align_layers=1,
            text=text,
            fusion=fusion,
            embed_dim=embed_dim,
            temperature=temperature,
            weights=weights,
            mlm_prob=mlm_prob,
            hard_negatives=hard_negatives,
        )
        self.video_frozen = video_frozen
        if video_frozen:
            # left out of the optimizer; its weights stay in the checkpoint
            self.encoder.requires_grad_(False)
        with own_seed(audio_seed):
            audio_encoder = AudioEncoder(audio)
        self.audio_encoder = audio_encoder if audio_trainable else FrozenModule(audio_encoder)
        self.audio_proj = nn.Linear(audio.width, embed_dim)
        if weights.vtm > 0:
            self.audio_tokens = nn.Linear(audio.width, self.encoder.width)  # into the decoder's video width
            self.vtm_head_av = nn.Linear(self.text_encoder.width, 2)

    def audio(self, batch: dict) -> AudioOutput:
        """The batch's fbank ``audio`` [B,F,M] with ``audio_valid`` [B,F] (zeros + all-False without audio)."""
        if "audio" not in batch:
            raise ValueError(
                "InternVideo2 stage 2 needs the clips' audio: a dataset wrapped in AudioVideoDataset"
            )
        if isinstance(self.audio_encoder, FrozenModule):
            with torch.no_grad():
                return self.audio_encoder(batch["audio"], batch["audio_valid"])
        return self.audio_encoder(batch["audio"], batch["audio_valid"])

    def train(self, mode: bool = True) -> InternVideo2Stage2Task:
        super().train(mode)
        if self.video_frozen:
            self.encoder.eval()  # no drop-path in a fixed encoder
        return self

    def audio_embedding(self, sound: AudioOutput) -> torch.Tensor:
        """[B,E]: the audio projection of the pooled audio tokens, zeros for a clip without sound (so its
        video + audio embedding is its video embedding)."""
        a = self.audio_proj(sound.pooled)
        return a * sound.present[:, None].to(a.dtype)

    @torch.no_grad()
    def modality_embeddings(self, video: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Clip embeddings [B,E] from each modality for evaluation, on every token (no mask): ``video`` (the
        video projection of the mean token, as retrieval uses), ``audio`` (the audio projection of the pooled
        audio tokens; zeros for a clip without sound) and ``video+audio`` (their sum, the embedding the
        video + audio pair is trained with). ``video``: the normalised clip [B,C,T,H,W]; ``batch``: its audio.
        """
        v = self.contrastive.video(self.encoder(video).tokens.mean(1))
        a = self.audio_embedding(self.audio(batch))
        return {"video": v, "audio": a, "video+audio": v + a}

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.contrastive.clamp_()
        captions, av_captions = captions_of(batch), list(batch["av_caption"])
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        device = clip.device
        video = self.augment.normalize(clip)
        # no teacher: the student on the tokens the mask keeps
        with torch.no_grad() if self.video_frozen else contextlib.nullcontext():
            _, out, _ = unmasked_alignment(
                self.encoder, self.mask_cfg, None, None, video, clip, batch, generator
            )
        tokens = out.tokens  # [B,Nv,Dv]
        sound = self.audio(batch)
        texts = {
            "v": self.tokenizer(captions, device=device),
            "va": self.tokenizer(av_captions, device=device),
        }
        t_out = {k: self.text_encoder(t["ids"], t["mask"]) for k, t in texts.items()}
        v_emb = self.contrastive.video(tokens.mean(1))  # [B,E]
        embs = {"v": v_emb, "va": v_emb + self.audio_embedding(sound)}
        t_emb = {k: self.contrastive.text(o.pooled) for k, o in t_out.items()}
        idx = video_ids(batch, device)
        parts: dict[str, torch.Tensor] = {}
        if self.weights.vtc > 0:
            parts["vtc"] = vtc_loss(embs["v"], t_emb["v"], self.contrastive.temp, idx)
            parts["vtc_av"] = vtc_loss(embs["va"], t_emb["va"], self.contrastive.temp, idx)
        if self.weights.vtm > 0:
            args = (idx, generator)
            parts["vtm"] = self._matching(tokens, t_out["v"].tokens, texts["v"]["mask"], embs["v"], t_emb["v"],
                                          *args)  # fmt: skip
            a_tok = self.audio_tokens(sound.tokens) * sound.valid[..., None].to(
                tokens.dtype
            )  # zeros: no audio
            parts["vtm_av"] = self._matching(torch.cat([tokens, a_tok], dim=1), t_out["va"].tokens,
                                             texts["va"]["mask"], embs["va"], t_emb["va"], *args,
                                             head=self.vtm_head_av)  # fmt: skip
        if self.weights.mlm > 0:
            parts["mlm"] = self._mlm(tokens, texts["v"], generator)
        beta = {"vtc": self.weights.vtc, "vtc_av": self.weights.vtc, "vtm": self.weights.vtm,
                "vtm_av": self.weights.vtm, "mlm": self.weights.mlm}  # fmt: skip
        loss = sum(beta[k] * v for k, v in parts.items())
        return {
            "loss": loss,
            **{f"loss_{k}": v.detach() for k, v in parts.items()},
            "temp": self.contrastive.temp.detach(),
        }
