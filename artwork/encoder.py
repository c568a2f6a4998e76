"""CLIP image/text encoders: pretrained open_clip models, local checkpoints, and the tiny test model.

Every encoder has an `encoder_id` that is stored next to each embedding, so a catalog can refuse
to mix vectors from two different models. The tiny model is a randomly initialised (seeded)
CLIP-shaped network built from the project's own config: it exercises every code path without
weights, and its id and label say loudly that it is not a trained model.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_NAME = "tiny"

# The tiny model: CLIP's shape (ViT image tower, transformer text tower, shared embedding space)
# at a size that embeds hundreds of images a second on a laptop CPU.
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8,
                   "pool_type": "avg"},  # mean-pooled patches: a random net then still tells images apart
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_SEED = 0
TINY_LABEL = "TINY RANDOM TEST ENCODER (untrained, seeded; tags are not meaningful)"

_HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsUnavailable(RuntimeError):
    """Pretrained weights are not on this machine; the message says how to provide them."""


@dataclass
class Encoder:
    """A loaded CLIP model with its preprocessing and tokenizer."""

    encoder_id: str
    label: str
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    device: torch.device
    is_tiny: bool

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    def preprocess_batch(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Resize/crop/normalise PIL images into one model-ready tensor."""
        return torch.stack([self.preprocess(im.convert("RGB")) for im in images])

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Forward preprocessed pixels; returns L2-normalised float32 rows."""
        feats = self.model.encode_image(pixels.to(self.device))
        return _normalise(feats)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed PIL images in batches; returns an (n, dim) float32 array of unit rows."""
        out = [self.embed_pixels(self.preprocess_batch(images[i : i + batch_size]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Embed text prompts; returns an (n, dim) float32 array of unit rows."""
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[i : i + batch_size])).to(self.device)
            out.append(_normalise(self.model.encode_text(tokens)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def _normalise(feats: torch.Tensor) -> np.ndarray:
    feats = feats.float()
    feats = feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return feats.cpu().numpy().astype(np.float32, copy=False)


def _device(device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def build_tiny(seed: int = TINY_SEED, device: str | None = None) -> Encoder:
    """The project's tiny CLIP-shaped model with fixed-seed random weights (tests, offline demo)."""
    import open_clip
    from open_clip.transform import image_transform

    # fork_rng keeps the caller's global torch RNG untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(
            embed_dim=TINY_CONFIG["embed_dim"],
            vision_cfg=TINY_CONFIG["vision_cfg"],
            text_cfg=TINY_CONFIG["text_cfg"],
        )
    dev = _device(device)
    model.eval().to(dev)
    preprocess = image_transform(TINY_CONFIG["vision_cfg"]["image_size"], is_train=False)
    ctx = TINY_CONFIG["text_cfg"]["context_length"]
    base_tok = open_clip.get_tokenizer("ViT-B-32")
    return Encoder(
        encoder_id=f"tiny-random-clip/seed{seed}",
        label=TINY_LABEL,
        model=model,
        preprocess=preprocess,
        tokenizer=lambda texts: base_tok(texts, context_length=ctx),
        device=dev,
        is_tiny=True,
    )


def find_cached_weights(model: str, pretrained: str, cache_dir: str | None = None) -> Path | None:
    """Look for a pretrained tag's weight file in the Hugging Face cache without any network."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model, pretrained)
    repo = (cfg.get("hf_hub") or "").strip("/")
    if not repo:
        return None
    for filename in _HF_WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        if isinstance(hit, str) and os.path.exists(hit):
            return Path(hit)
    return None


def _file_digest(path: Path, chars: int = 12) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:chars]


def _how_to_provide(model: str, pretrained: str, cache_dir: str | None) -> str:
    return (
        f"CLIP weights for {model}/{pretrained} are not on this machine "
        f"(looked in the Hugging Face cache{' at ' + cache_dir if cache_dir else ''}). Either "
        f"pre-download them on a connected machine (python -c \"import open_clip; "
        f"open_clip.create_model('{model}', pretrained='{pretrained}')\") and copy "
        f"~/.cache/huggingface here (or pass --cache-dir), pass --checkpoint PATH to a local "
        f"open_clip checkpoint, or add --download to fetch them now."
    )


def load_encoder(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = DEFAULT_PRETRAINED,
    checkpoint: str | os.PathLike | None = None,
    cache_dir: str | None = None,
    device: str | None = None,
    download: bool = False,
) -> Encoder:
    """Load a CLIP encoder: the tiny test model ("tiny"), a local checkpoint, or a pretrained tag.

    Pretrained tags are looked up in the local cache only, unless `download` is set, so an
    offline machine gets a clear WeightsUnavailable instead of a minute of network retries.
    """
    if model == TINY_NAME:
        return build_tiny(device=device)
    import open_clip

    if model not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {model!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14")
    dev = _device(device)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsUnavailable(f"checkpoint file {path} does not exist")
        # Checkpoints are often all named open_clip_model.safetensors: the id carries a content
        # hash, so two different checkpoints can never pass for one encoder in a catalog.
        weights, tag = str(path), f"file:{path.name}:{_file_digest(path)}"
    else:
        if not pretrained:
            raise ValueError("give a pretrained tag or a checkpoint path")
        cached = find_cached_weights(model, pretrained, cache_dir)
        if cached is None and not download:
            raise WeightsUnavailable(_how_to_provide(model, pretrained, cache_dir))
        weights, tag = (str(cached) if cached else pretrained), pretrained
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=weights, device=dev, cache_dir=cache_dir
        )
    except Exception as exc:  # network, corrupt file, wrong architecture for the checkpoint
        raise WeightsUnavailable(f"could not load {model} weights from {weights}: {exc}. "
                                 + _how_to_provide(model, pretrained or "", cache_dir)) from exc
    net.eval()
    return Encoder(
        encoder_id=f"open_clip/{model}/{tag}",
        label=f"CLIP {model} ({tag})",
        model=net,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer(model),
        device=dev,
        is_tiny=False,
    )


def load_or_tiny(warn: Callable[[str], None] = print, **kwargs) -> Encoder:
    """Load the requested encoder, or say in one line why not and fall back to the tiny one."""
    try:
        return load_encoder(**kwargs)
    except WeightsUnavailable as exc:
        first = str(exc).split(". ")[0]
        warn(f"Pretrained CLIP unavailable ({first}); running on the {TINY_LABEL}. "
             "See README 'CLIP weights' to use the real model.")
        return build_tiny(device=kwargs.get("device"))
