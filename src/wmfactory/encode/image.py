"""Image encoders: the vision tower of a `transformers` model (ViT, DINOv2, the vision half of CLIP or SigLIP) with
its `AutoImageProcessor`. Pooling `cls` (the class token), `mean` (over the patch tokens), `pooler` (the model's
pooled output) or `patch` (one vector per patch, in row-major order: n = patches)."""

from typing import Any

import numpy as np

from ..extras.errors import ConfigError, DataError
from ..hparams.encode_args import EncodeArguments
from .encoders import Encoder, Loaded, resolved_revision, from_pretrained, hidden_size, inference, load_model, register_encoder, require
from .items import Item


def read_image(item: Item):
    """The image as RGB, fully decoded (so a truncated file fails here, naming the item)."""
    pil = require("PIL.Image", "reading images")
    try:
        with pil.open(item.path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, pil.DecompressionBombError) as err:
        reason = str(err).split("\n")[0] or type(err).__name__
        raise DataError(f"{item.where()}: not a readable image ({reason})") from None


@register_encoder("image")
class ImageEncoder(Encoder):
    type = "image"

    def __init__(self, args: EncodeArguments, loaded: Loaded):
        from transformers import AutoImageProcessor

        super().__init__(args, loaded)
        require("PIL.Image", "reading images")
        self.processor = from_pretrained(AutoImageProcessor, "image processor", args)
        model = load_model(args, loaded)
        self.revision = resolved_revision(args, model)
        self.tower = getattr(model, "vision_model", model)  # CLIP and SigLIP: the vision half
        config = getattr(model.config, "vision_config", None) or model.config
        self.patch_size = getattr(config, "patch_size", None)
        if self.pooling in ("cls", "mean", "patch") and not isinstance(self.patch_size, int):
            raise ConfigError(f"`pooling: {self.pooling}` needs a patch-based vision model (a config with "
                              f"patch_size); '{args.encoder}' has none: use `pooling: pooler`.")
        self.dimension = hidden_size(model.config)

    def read(self, item: Item) -> Any:
        return read_image(item)

    def encode_raw(self, raws: list[Any]) -> list[np.ndarray]:
        pixels = self.processor(images=raws, return_tensors="pt")["pixel_values"]  # [b, c, H, W]
        with inference():
            out = self.tower(pixel_values=pixels.to(self.device, self.dtype))
        if self.pooling == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"`pooling: pooler`, but '{self.name}' has no pooled output: use cls or mean.")
            return [vector[None] for vector in out.pooler_output.float().cpu().numpy()]
        hidden = out.last_hidden_state.float()  # [b, prefix + patches, h]
        patches = (pixels.shape[-2] // self.patch_size) * (pixels.shape[-1] // self.patch_size)
        prefix = hidden.shape[1] - patches  # class and register tokens
        if self.pooling == "cls":
            if prefix < 1:
                raise ConfigError(f"`pooling: cls`, but '{self.name}' has no class token: use mean, patch or pooler.")
            return [vector[None] for vector in hidden[:, 0].cpu().numpy()]
        tokens = hidden[:, prefix:]  # [b, patches, h]
        if self.pooling == "mean":
            return [vector[None] for vector in tokens.mean(1).cpu().numpy()]
        return list(tokens.cpu().numpy())
