"""Paired image / mask / weight-map augmentation on kornia: one set of random parameters per sample.

Masks travel through kornia's mask path (nearest-neighbour resampling) encoded as
``id + 1``, so every pixel that geometry brings in from outside the image (crop padding,
rotation corners, elastic borders) becomes 0 and decodes to the ignore id 255. The
weight map rides along in the same tensor, so it can never fall out of alignment.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from segkit.voc import IGNORE_INDEX


@dataclass(frozen=True)
class AugmentSettings:
    """What the training augmentation does; ``crop`` is the output side length."""

    crop: int
    enabled: bool = True
    rotate: float = 15.0
    scale: float = 0.15
    elastic: float = 0.25
    brightness: float = 0.1
    contrast: float = 0.1


def _kornia():  # type: ignore[no-untyped-def]
    try:
        import kornia.augmentation as K
    except ImportError as error:  # pragma: no cover - kornia is a dependency
        from segkit.errors import OptionError

        raise OptionError("training augmentation needs kornia: pip install kornia") from error
    return K


class PairedAugment:
    """Random crop/pad to ``crop``, flips, rotation/scale, elastic, brightness/contrast.

    Call with ``image [N, C, H, W]`` float in [0, 1], ``mask [N, H, W]`` int64 class ids
    (255 = ignore) and an optional ``weight [N, H, W]`` float map; returns the three
    transformed the same way, masks still integer ids. Randomness comes from torch's
    global generator: seed it (or fork it) around the call for repeatable output.

    Which optional steps run is drawn here, once per call, and only those steps run:
    kornia computes a step (the elastic field, the affine warp) for every sample even
    when its probability leaves the sample untouched, which made an unused elastic
    step the costliest part of loading a sample.
    """

    def __init__(self, settings: AugmentSettings) -> None:
        self._K = K = _kornia()
        crop = (settings.crop, settings.crop)
        self._crop = K.RandomCrop(crop, pad_if_needed=True, fill=0.0)
        #: ``(probability, step)``; each step itself always applies (p=1).
        self._optional: list[tuple[float, object]] = []
        if settings.enabled:
            self._optional += [
                (0.5, K.RandomHorizontalFlip(p=1.0)),
                (0.5, K.RandomVerticalFlip(p=1.0)),
            ]
            if settings.rotate > 0 or settings.scale > 0:
                scale = (1.0 - settings.scale, 1.0 + settings.scale)
                self._optional.append(
                    (0.7, K.RandomAffine(degrees=settings.rotate, scale=scale, p=1.0))
                )
            if settings.elastic > 0:
                elastic = K.RandomElasticTransform(
                    kernel_size=(63, 63),
                    sigma=(32.0, 32.0),
                    alpha=(1.0, 1.0),
                    align_corners=False,
                    p=1.0,
                )
                self._optional.append((settings.elastic, elastic))
            if settings.brightness > 0 or settings.contrast > 0:
                jiggle = K.ColorJiggle(
                    brightness=settings.brightness, contrast=settings.contrast, p=1.0
                )
                self._optional.append((0.8, jiggle))
        self.settings = settings
        self._pipelines: dict[tuple[bool, ...], object] = {}

    def _pipeline(self, chosen: tuple[bool, ...]):  # type: ignore[no-untyped-def]
        if chosen not in self._pipelines:
            steps = [self._crop] + [
                step for (_, step), on in zip(self._optional, chosen, strict=True) if on
            ]
            self._pipelines[chosen] = self._K.AugmentationSequential(
                *steps, data_keys=["input", "mask"]
            )
        return self._pipelines[chosen]

    def __call__(
        self, image: Tensor, mask: Tensor, weight: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        planes = [(mask.to(torch.float32) + 1.0).unsqueeze(1)]
        if weight is not None:
            planes.append(weight.to(torch.float32).unsqueeze(1))
        draws = torch.rand(len(self._optional)).tolist()
        chosen = tuple(draw < p for draw, (p, _) in zip(draws, self._optional, strict=True))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # kornia's align_corners notices
            out_image, out_planes = self._pipeline(chosen)(image, torch.cat(planes, dim=1))
        ids = out_planes[:, 0].round().to(torch.int64)
        out_mask = torch.where(ids <= 0, IGNORE_INDEX, ids - 1)
        out_weight = out_planes[:, 1] if weight is not None else None
        return out_image.clamp_(0.0, 1.0), out_mask, out_weight
