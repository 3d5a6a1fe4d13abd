"""The image track: photos through ``torchvision.transforms.v2`` into a CNN.

What only images have lives here: ImageFolder/CSV loading with every file decoded once
(``tunewise.data.images``), the note's networks (``tunewise.models.vision``), the mild and
strong pipelines (``tunewise.data.image_augment``) and batches of decoded, augmented
images. Augmentation is seeded by (seed, epoch, image), so a resumed run sees the same
crops as the run it continues, without touching the generator dropout draws from.

A saved image model is ``model.safetensors`` and a ``config.json`` naming the
architecture, labels, head and input size; ``load_image_model`` rebuilds it from those.

Example:
    >>> from tunewise.tracks import get_track
    >>> get_track("image").name
    'image'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tunewise.data import image_cache
from tunewise.data.image_cache import ImageCache, shared_cache, shrink, working_side
from tunewise.data.images import MAX_PIXELS as MAX_IMAGE_PIXELS
from tunewise.data.images import prepare_images
from tunewise.data.loading import DataError, Example
from tunewise.data.prepare import PreparedData
from tunewise.errors import ImageTooLarge, ModelError
from tunewise.model_dir import CONFIG_FILE, WEIGHTS_FILE, onnx_path, require_model_dir
from tunewise.recipes.schema import HeadSpec, ModelSpec, Recipe
from tunewise.tracks import Built

if TYPE_CHECKING:
    from tunewise.training.run import TrainOptions


@dataclass(frozen=True)
class ImageInputs:
    """How an image becomes the network's input: the shorter side it is first reduced to
    (``decode_side``, see ``tunewise.data.image_cache``; ``None`` in models saved before
    that step, which read images whole), the side of the square, and the normalisation the
    (pretrained) network expects."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    decode_side: int | None = None

    def transform(self, strength: str = "none"):
        from tunewise.data.image_augment import image_transform

        return image_transform(strength, self.size, self.mean, self.std)

    def to_dict(self) -> dict:
        return {
            "image_size": self.size,
            "mean": list(self.mean),
            "std": list(self.std),
            "decode_side": self.decode_side,
        }


def inputs_for(spec: ModelSpec) -> ImageInputs:
    """The input pipeline's settings for a recipe's model: its ``image_size`` or the
    architecture's own, and the architecture's normalisation.

    Example:
        >>> inputs_for(ModelSpec(architecture="customcnn", init="random")).size
        32
    """
    from tunewise.models.vision import architecture

    arch = architecture(spec.architecture)
    size = spec.image_size or arch.image_size
    return ImageInputs(size, arch.mean, arch.std, working_side(size))


class ImageDataset(Dataset):
    """``(index, image tensor, label_id)``; each image decoded and transformed on access,
    the random draws of its augmentation seeded by (seed, epoch, index).

    Each image is reduced so its shorter side is ``side`` before the transform
    (``tunewise.data.image_cache``). With a ``cache`` (training's loaders) it is decoded once
    and kept for the epochs and candidates that follow; without one, decoded every time.
    """

    def __init__(
        self,
        paths: list[str],
        label_ids: list[int] | None,
        transform,
        seed: int = 0,
        *,
        cache: ImageCache | None = None,
        side: int | None = None,
    ) -> None:
        self.paths, self.label_ids, self.transform, self.seed = paths, label_ids, transform, seed
        self.cache, self.side = cache, side
        self.epoch = 0

    def use_epoch(self, epoch: int) -> None:
        """Augment as in ``epoch`` (so a resumed run repeats it exactly)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, int]:
        path, side = self.paths[i], self.side
        rgb = self.cache.get(path, side) if self.cache is not None else image_cache.decode(path, side)
        # fork_rng: the augmentation's draws come from their own seed and leave the global
        # generator (dropout, shuffling) exactly where it was
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed would reseed a GPU's too (dropout there)
            torch.default_generator.manual_seed(
                int(np.random.SeedSequence([self.seed, self.epoch, i]).generate_state(1)[0])
            )
            pixels = self.transform(rgb)
        return i, pixels, -100 if self.label_ids is None else self.label_ids[i]


class EpochSampler(torch.utils.data.Sampler):
    """A shuffle that depends on (seed, epoch) alone, so a resumed run repeats it."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def use_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def collate_images(batch: list[tuple[int, torch.Tensor, int]]) -> dict[str, torch.Tensor]:
    """Stack a batch; the network's input is ``x`` (torchvision and timm name it so)."""
    return {
        "x": torch.stack([pixels for _, pixels, _ in batch]),
        "labels": torch.tensor([label for _, _, label in batch], dtype=torch.long),
        "index": torch.tensor([index for index, _, _ in batch], dtype=torch.long),
    }


class ImageTrack:
    """Images: decoded once to check them, augmented by recipe, classified by a CNN."""

    name = "image"

    def prepare(self, opts: TrainOptions) -> PreparedData:
        """``prepare_images`` with the run's split; ``--text-column`` names the path column of
        a CSV/JSONL list."""
        if opts.background:
            raise DataError("--background adds Chinese sentences; it is for the text track")
        return prepare_images(
            opts.data,
            fractions=opts.split,
            seed=opts.seed if opts.split_seed is None else opts.split_seed,
            path_column=opts.text_column,
            label_column=opts.label_column,
            label_map=opts.label_map,
        )

    def build(
        self, opts: TrainOptions, data: PreparedData, resume_dir: Path | None, console: Console
    ) -> Built:
        from tunewise.models.vision import build_image_model

        spec = opts.recipe.model
        # a comparison hands every arm the same --pretrained; a random-init recipe ignores it
        pretrained = opts.pretrained if spec.init == "pretrained" else None
        built = build_image_model(spec, data.labels, pretrained=pretrained)
        inputs = inputs_for(spec)
        config = image_config(spec, data.labels, inputs)
        return Built(built.model, inputs, built.source, built.notes, inputs.to_dict(), config=config)

    def loaders(
        self,
        built: Built,
        train: list[Example],
        select: list[Example],
        labels: list[str],
        recipe: Recipe,
        seed: int,
    ) -> tuple[DataLoader, DataLoader]:
        index = {lab: i for i, lab in enumerate(labels)}
        inputs: ImageInputs = built.inputs
        # every epoch of every candidate reads the same images: decode each once, at the
        # resolution the network needs, and keep it (bounded; tunewise.data.image_cache)
        cached = {"cache": shared_cache(), "side": inputs.decode_side}
        train_set = ImageDataset(
            [e.text for e in train],
            [index[e.label] for e in train],
            inputs.transform(recipe.augmentation),
            seed,
            **cached,
        )
        select_set = ImageDataset(
            [e.text for e in select], [index[e.label] for e in select], inputs.transform(), **cached
        )
        train_loader = DataLoader(
            train_set,
            batch_size=recipe.batch_size,
            sampler=EpochSampler(len(train_set), seed),
            collate_fn=collate_images,
        )
        select_loader = DataLoader(select_set, batch_size=recipe.eval_batch_size, collate_fn=collate_images)
        return train_loader, select_loader

    def save(self, built: Built, out: Path) -> None:
        """Nothing beyond ``tunewise.json``: the input settings are there (``built.meta``)."""

    def logits(self, model_dir: Path, examples: list[Example]) -> np.ndarray:
        model, inputs, _ = load_image_model(model_dir)
        return image_logits(model, inputs, [e.text for e in examples])


#: what an image model's config.json must hold
CONFIG_KEYS = ("architecture", "head", "num_labels", "id2label", "image_size", "mean", "std")


def require_vision() -> None:
    """A clear error, not an ImportError traceback, when the vision extra is not installed.

    Example:
        >>> require_vision()  # torchvision and timm are installed here
    """
    import importlib

    from tunewise.errors import MissingExtra

    missing = []
    for module in ("torchvision", "timm"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingExtra(
            f"images need {' and '.join(missing)}: pip install 'tunewise[vision]' "
            '(torchvision fixes the torch version: pip install "torch==2.14.1" "torchvision==0.29.1")'
        )


def image_config(spec: ModelSpec, labels: list[str], inputs: ImageInputs) -> dict:
    """What ``load_image_model`` needs to rebuild the network.

    Example:
        >>> spec = ModelSpec(architecture="customcnn", init="random")
        >>> image_config(spec, ["ant", "bee"], inputs_for(spec))["id2label"]
        {'0': 'ant', '1': 'bee'}
    """
    return {
        "tunewise_track": "image",
        "architecture": spec.architecture,
        "head": spec.head.model_dump(),
        "num_labels": len(labels),
        "id2label": {str(i): lab for i, lab in enumerate(labels)},
        "label2id": {lab: i for i, lab in enumerate(labels)},
        **inputs.to_dict(),
    }


def image_model_config(directory: str | Path) -> tuple[dict, ImageInputs, list[str]]:
    """``(config.json, input settings, labels)`` of a saved or exported image model, without
    its weights (an ONNX export has none)."""
    directory = require_model_dir(directory)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{directory / CONFIG_FILE}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("tunewise_track") != "image":
        raise ModelError(f"{directory}: not an image model (its config.json names no image architecture)")
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ModelError(
            f"{directory / CONFIG_FILE}: incomplete image model config (no {', '.join(missing)})"
        )
    try:
        labels = [config["id2label"][str(i)] for i in range(config["num_labels"])]
        side = config.get("decode_side")
        inputs = ImageInputs(
            int(config["image_size"]),
            tuple(config["mean"]),
            tuple(config["std"]),
            None if side is None else int(side),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(
            f"{directory / CONFIG_FILE}: incomplete image model config ({type(e).__name__}: {e})"
        ) from None
    return config, inputs, labels


def load_image_model(directory: str | Path) -> tuple[nn.Module, ImageInputs, list[str]]:
    """``(model in eval mode, its input settings, its labels)`` of a saved image model.

    Example:
        >>> model, inputs, labels = load_image_model("runs/ants")  # doctest: +SKIP
    """
    from safetensors.torch import load_file

    from tunewise.models.vision import build_image_model

    directory = Path(directory)
    config, inputs, labels = image_model_config(directory)
    spec = ModelSpec(
        architecture=config["architecture"],
        init="random",
        head=HeadSpec(**config["head"]),
        image_size=config["image_size"],
    )
    model = build_image_model(spec, labels).model
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{directory}: no {WEIGHTS_FILE}")
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as e:  # weights of another architecture, head or label count
        raise ModelError(
            f"{weights}: does not fit the network its config.json describes ({str(e)[:300]})"
        ) from None
    return model.eval(), inputs, labels


@torch.no_grad()
def image_logits(model: nn.Module, inputs: ImageInputs, paths: list[str], batch_size: int = 64) -> np.ndarray:
    """Raw logits ``(n, labels)`` of ``model`` for the images at ``paths``, evaluated as dev was."""
    dataset = ImageDataset(paths, None, inputs.transform(), side=inputs.decode_side)
    rows = []
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_images):
        rows.append(model(batch["x"]).float().numpy())
    return np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, 0))


@dataclass(frozen=True)
class ImagePrediction:
    """The result for one image."""

    image: str  # the file's path, or the upload's name
    label: str
    probabilities: dict[str, float]
    width: int
    height: int

    def to_dict(self) -> dict:
        return {
            "image": self.image,
            "label": self.label,
            "probabilities": self.probabilities,
            "width": self.width,
            "height": self.height,
        }


def open_image(source, name: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS):
    """``(RGB PIL image, name)`` from a path, bytes, or a PIL image; a clear error for
    anything Pillow cannot decode.

    Example:
        >>> open_image(b"not a photo", "upload")
        Traceback (most recent call last):
        ...
        tunewise.errors.DataError: upload: not an image Pillow can read
    """
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        return source.convert("RGB"), name or "image"
    label = name or str(source if not isinstance(source, bytes) else "bytes")
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as e:
        raise DataError(f"{label}: cannot open ({e.strerror or e})") from None
    try:
        with handle, Image.open(handle) as image:
            if image.width * image.height > max_pixels:  # checked from the header, before decoding
                raise ImageTooLarge(
                    f"{label}: {image.width}x{image.height} pixels; the limit is {max_pixels:,} pixels"
                )
            return image.convert("RGB"), label
    except ImageTooLarge:
        raise
    except UnidentifiedImageError:
        raise DataError(f"{label}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{label}: cannot decode ({e})") from None


class ImagePredictor:
    """Classify images with a model saved by ``tunewise train`` (an image recipe).

    Images are prepared exactly as dev was during training (resized, centre-cropped,
    normalised for the network); probabilities are calibrated by the temperature fitted on
    dev after training.

    Example:
        >>> p = ImagePredictor("runs/ants")  # doctest: +SKIP
        >>> p.predict(["bee.jpg"])[0].label  # doctest: +SKIP
        'bees'
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        batch_size: int = 32,
        calibrated: bool = True,
        device: str | None = None,
        backend: str = "auto",
        threads: int | None = None,
        spin: bool = True,
    ) -> None:
        from tunewise.calibration import load_calibration
        from tunewise.inference import OnnxScorer, _choose_backend

        require_vision()
        self.directory = Path(model_dir)
        self.backend = _choose_backend(self.directory, backend)  # type: ignore[arg-type]
        if self.backend == "onnx":
            _, self.inputs, self.labels = image_model_config(self.directory)
            self.onnx = OnnxScorer(onnx_path(self.directory), threads, spin)
            self.model = None
        else:
            self.model, self.inputs, self.labels = load_image_model(self.directory)
            self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.model.to(self.device)
        self.transform = self.inputs.transform()
        self.batch_size = batch_size
        self.calibration = load_calibration(self.directory) if calibrated else None
        self.temperature = self.calibration.temperature if self.calibration else 1.0
        self.normal_label = None  # no fraud score for images
        self.threshold = None

    @torch.no_grad()
    def logits(self, images: list) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """Raw logits ``(n, labels)`` and ``(name, width, height)`` of each image (paths,
        bytes or PIL images)."""
        rows, info = [], []
        for start in range(0, len(images), self.batch_size):
            batch = []
            for source in images[start : start + self.batch_size]:
                image, name = open_image(source)
                info.append((name, image.width, image.height))
                batch.append(self.transform(shrink(image, self.inputs.decode_side)))
            pixels = torch.stack(batch)
            if self.model is None:
                rows.append(self.onnx.session.run(["logits"], {"x": pixels.numpy()})[0])
            else:
                rows.append(self.model(pixels.to(self.device)).float().cpu().numpy())
        logits = np.concatenate(rows).astype(np.float64) if rows else np.zeros((0, len(self.labels)))
        return logits, info

    def scores(self, images: list, progress=None) -> tuple[np.ndarray, np.ndarray, dict]:
        """What ``evaluate`` reports: calibrated probabilities and the uncalibrated ones."""
        from tunewise.calibration import softmax

        logits, _ = self.logits(images)
        if progress is not None:
            progress(len(images))
        return softmax(logits, self.temperature), softmax(logits), {}

    def labelled_rows(
        self,
        data: str | Path,
        *,
        text_column: str | None = None,
        label_column: str | None = None,
        label_map=None,
    ) -> list[tuple[str, int, str]]:
        """``(path, label id, split key)`` of each distinct labelled image of ``data``, keyed
        by its bytes as training keyed its split (``--text-column`` names a list's path column)."""
        from tunewise.data.images import file_digest, load_images
        from tunewise.data.split import text_key
        from tunewise.evaluation import check_known_labels

        loaded = load_images(data, path_column=text_column, label_column=label_column, label_map=label_map)
        check_known_labels(loaded.examples, self.labels)
        index = {lab: i for i, lab in enumerate(self.labels)}
        seen: set[str] = set()
        rows = []
        for ex in loaded.examples:
            key = text_key(file_digest(ex.text), ex.label)
            if key not in seen:  # each distinct image once, as training did
                seen.add(key)
                rows.append((ex.text, index[ex.label], key))
        return rows

    def predict_proba(self, images: list) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        from tunewise.calibration import softmax

        logits, info = self.logits(images)
        return softmax(logits, self.temperature), info

    def predict(self, images: list, names: list[str] | None = None) -> list[ImagePrediction]:
        probs, info = self.predict_proba(images)
        results = []
        for i, (p, (name, width, height)) in enumerate(zip(probs, info, strict=True)):
            results.append(
                ImagePrediction(
                    image=names[i] if names else name,
                    label=self.labels[int(p.argmax())],
                    probabilities={lab: float(x) for lab, x in zip(self.labels, p, strict=True)},
                    width=width,
                    height=height,
                )
            )
        return results
