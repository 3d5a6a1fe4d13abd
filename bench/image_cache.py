"""What the decoded-image cache saves: one epoch of training input on real photos, decoded
from disk every time (the baseline: how the image track read images before the cache) vs
served from the cache (each photo decoded once, reduced to 5/3 of the network's side).

    python bench/image_cache.py                       # ../shared/data/hymenoptera's train/
    python bench/image_cache.py --data ../shared/data/cifar10_subset --limit 2000

For each of the two built-in pipelines — ``image-scratch`` (the CustomCNN's 32x32, strong
augmentation) and ``image-finetune`` (EfficientNet-Lite0's 224x224, mild augmentation) —
it times epochs of ``ImageDataset`` batches, the exact code the training loaders run: the
baseline, the cache's first (cold) epoch, and a warm epoch. Figures are the median of
``--repeats`` epochs; the ratio is baseline / warm, measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"


def epoch_seconds(dataset, batch_size: int = 32) -> float:
    from torch.utils.data import DataLoader

    from tunewise.tracks.image import collate_images

    start = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_images):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default=str(SHARED), help="an image folder (split/class/file or class/file)"
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from tunewise.data.image_cache import ImageCache, working_side
    from tunewise.data.images import prepare_images
    from tunewise.recipes import load_recipe
    from tunewise.tracks.image import ImageDataset, inputs_for

    torch.set_num_threads(2)
    data = prepare_images(args.data, seed=0)
    paths = [e.text for e in data.splits["train"]]
    if args.limit:
        paths = paths[: args.limit]
    print(f"{len(paths)} training images from {args.data}")
    for name in ("image-scratch", "image-finetune"):
        recipe = load_recipe(name)
        inputs = inputs_for(recipe.model)
        transform = inputs.transform(recipe.augmentation)
        baseline = ImageDataset(paths, None, transform, seed=0)
        cache = ImageCache()
        cached = ImageDataset(paths, None, transform, seed=0, cache=cache, side=working_side(inputs.size))
        base = statistics.median(epoch_seconds(baseline) for _ in range(args.repeats))
        cold = epoch_seconds(cached)
        warm = statistics.median(epoch_seconds(cached) for _ in range(args.repeats))
        held = cache.stats()
        print(
            f"{name:15s} {inputs.size:>3d}px {recipe.augmentation:6s} "
            f"baseline (decode every epoch) {base:6.2f} s · cached: first epoch {cold:6.2f} s, "
            f"then {warm:6.2f} s per epoch · {base / warm:5.1f}x faster · "
            f"{held['images']} images, {held['bytes'] / 2**20:.0f} MiB held"
        )


if __name__ == "__main__":
    main()
