"""Image pipelines from ``torchvision.transforms.v2``, chosen by the recipe's ``augmentation``.

The note's contrast: training from scratch needs *strong* augmentation (the network has
seen nothing else), fine-tuning a pretrained one *mild* augmentation (its features already
generalise; heavy distortion only slows it down). Evaluation never augments.

============  ===================================================================
``none``      resize (to 1/0.875 of the side) and centre-crop, as evaluation does
``mild``      random resized crop (scale 0.8–1) and horizontal flip
``strong``    random resized crop (scale 0.5–1), flip, rotation ±15°, colour jitter
============  ===================================================================

Example:
    >>> from PIL import Image
    >>> pipeline = image_transform("mild", size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    >>> pipeline(Image.new("RGB", (40, 30))).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

from typing import Literal

from tunewise.errors import RecipeError

Strength = Literal["none", "mild", "strong"]
# ImageNet evaluation's convention: resize to side / 0.875, then centre-crop the side
CROP_PCT = 0.875


def image_transform(strength: Strength, size: int, mean: tuple[float, ...], std: tuple[float, ...]):
    """The pipeline for one split: PIL image -> normalised float tensor ``(3, size, size)``."""
    import torch
    from torchvision.transforms import v2

    if strength == "none":
        # small inputs (CIFAR's 32x32) are used whole; photos are resized and centre-cropped
        geometry = [v2.Resize(round(size / CROP_PCT), antialias=True), v2.CenterCrop(size)]
        if size <= 64:
            geometry = [v2.Resize((size, size), antialias=True)]
    elif strength == "mild":
        geometry = [v2.RandomResizedCrop(size, scale=(0.8, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    elif strength == "strong":
        geometry = [
            v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomRotation(15),
            v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
        ]
    else:
        raise RecipeError(f"unknown augmentation {strength!r}; choose none, mild or strong")
    return v2.Compose(
        [v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )
