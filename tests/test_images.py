"""The image track: the note's CustomCNN, ImageNet CNNs with the note's head, child-group
freezing, frozen BatchNorm, the offline ImageNet checkpoint, image data with bad files,
and training through the one loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

if os.environ.get("TUNEWISE_REQUIRE_VISION") != "1":  # CI sets it: there the tests must run
    pytest.importorskip("torchvision", reason="images need the vision extra: pip install 'tunewise[vision]'")
    pytest.importorskip("timm", reason="images need the vision extra: pip install 'tunewise[vision]'")

from PIL import Image
from rich.console import Console

from tunewise.data.images import check_image, load_images, prepare_images
from tunewise.errors import DataError, FreezeError, ModelError
from tunewise.models.vision import CustomCNN, build_image_model, load_weights_file
from tunewise.recipes import load_recipe, parse_recipe
from tunewise.recipes.schema import HeadSpec, ModelSpec
from tunewise.tracks import get_track
from tunewise.tracks.image import ImageDataset, collate_images, inputs_for, load_image_model
from tunewise.training.freeze import first_n_children, freeze, set_frozen_batchnorm_eval
from tunewise.training.loop import apply_initial_freeze, apply_stage, classification_task, fit
from tunewise.training.run import TrainOptions, train_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_images(root: Path, per_class: int = 12, size: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """Two classes a CNN separates in a few epochs: red-dominant and blue-dominant noise."""
    rng = np.random.default_rng(seed)
    for label, channel in (("blue", 2), ("red", 0)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(150, 255, (size[1], size[0]), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{label}{i:02d}.jpg", quality=90)
    return root


def add_bad_files(root: Path) -> None:
    """What real folders hold: a placeholder GIF, a truncated JPEG, a text file named .jpg."""
    Image.new("P", (20, 20)).save(root / "red" / "imageNotFound.gif")
    whole = (root / "blue" / "blue00.jpg").read_bytes()
    (root / "blue" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "blue" / "notes.jpg").write_text("not a photo", encoding="utf-8")
    (root / "red" / ".DS_Store").write_bytes(b"\0\1")


# --- models ---------------------------------------------------------------------------


def test_custom_cnn_is_the_notes_network() -> None:
    model = CustomCNN(10)
    assert [name for name, _ in model.named_children()] == [
        "conv1",
        "conv2",
        "conv3",
        "pool",
        "fc1",
        "fc2",
        "dropout",
    ]
    assert [
        (c.in_channels, c.out_channels, c.kernel_size, c.padding)
        for c in (model.conv1, model.conv2, model.conv3)
    ] == [
        (3, 16, (3, 3), (1, 1)),
        (16, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    assert (model.fc1.in_features, model.fc1.out_features, model.fc2.out_features) == (64 * 4 * 4, 512, 10)
    assert model.dropout.p == 0.5
    # 448 + 4,640 + 18,496 conv + 524,800 + 5,130 linear
    assert sum(p.numel() for p in model.parameters()) == 553_514
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 10)
    bigger = CustomCNN(2, image_size=96)
    assert bigger.fc1.in_features == 64 * 12 * 12 and bigger(torch.zeros(1, 3, 96, 96)).shape == (1, 2)
    with pytest.raises(ModelError, match="multiple of 8"):
        CustomCNN(2, image_size=30)


@pytest.mark.parametrize(
    ("architecture", "head", "in_features"),
    [
        ("resnet18", "fc", 512),
        ("mobilenet_v2", "classifier", 1280),
        ("efficientnet_lite0", "classifier", 1280),
    ],
)
def test_imagenet_architectures_get_the_notes_head(architecture: str, head: str, in_features: int) -> None:
    spec = ModelSpec(architecture=architecture, init="random", head=HeadSpec(type="mlp", hidden_size=512))
    built = build_image_model(spec, ["ant", "bee", "wasp"])
    layers = built.model.get_submodule(head).layers
    assert [type(m).__name__ for m in layers] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert (layers[0].in_features, layers[0].out_features, layers[2].p, layers[3].out_features) == (
        in_features,
        512,
        0.5,
        3,
    )
    assert built.model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    # the aliases name real modules: freezing by them cannot miss
    freeze(built.model)
    from tunewise.training.freeze import unfreeze

    assert unfreeze(built.model, ["last_block"]) > 0 and unfreeze(built.model, ["head"]) == 4


def test_first_n_children_counts_children_as_the_note_does() -> None:
    """``for i, child in enumerate(model.children()): if i < 7: freeze`` on ResNet-18 leaves
    exactly layer4 and fc training (relu and maxpool count, and have nothing to freeze)."""
    model = build_image_model(ModelSpec(architecture="resnet18", init="random"), ["a", "b"]).model
    recipe = parse_recipe(
        {
            "name": "note",
            "track": "image",
            "model": {"architecture": "resnet18"},
            "freeze": {"first_n_children": 7},
        }
    )
    apply_initial_freeze(model, recipe)
    trainable = {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}
    # the note's loop, literally, gives the same
    reference = build_image_model(ModelSpec(architecture="resnet18", init="random"), ["a", "b"]).model
    for i, child in enumerate(reference.children()):
        if i < 7:
            for p in child.parameters():
                p.requires_grad = False
    assert [p.requires_grad for p in reference.parameters()] == [p.requires_grad for p in model.parameters()]
    assert first_n_children(model, 4) == ["conv1", "bn1"]
    with pytest.raises(FreezeError, match="11 requested but ResNet has 10 children"):
        first_n_children(model, 11)


def test_frozen_batchnorm_keeps_its_running_statistics(tmp_path: Path) -> None:
    """Trained through ``fit``: the frozen blocks' BatchNorm statistics stay the ImageNet ones
    (eval mode), while the unfrozen last block's statistics follow the new data."""
    data = prepare_images(make_images(tmp_path / "imgs", per_class=8), seed=0)
    recipe = parse_recipe(
        {
            "name": "bn",
            "track": "image",
            "model": {"architecture": "resnet18", "init": "random", "image_size": 32},
            "freeze": {"first_n_children": 7},
            "optimizer": {"name": "adam", "lr": 1e-3},
            "epochs": 1,
            "batch_size": 8,
        }
    )
    track = get_track("image")
    opts = TrainOptions(data=tmp_path / "imgs", recipe=recipe, out=tmp_path / "out")
    built = track.build(opts, data, None, Console(quiet=True))
    before = {k: v.clone() for k, v in built.model.state_dict().items() if "running_mean" in k}
    train, dev = track.loaders(built, data.splits["train"], data.splits["dev"], data.labels, recipe, 0)
    ids = data.label_ids("train")
    task = classification_task(ids, data.label_ids("dev"), recipe, data.labels)
    fit(built.model, train, dev, recipe, tmp_path / "out", task=task, show_progress=False, log_with=None)
    after = built.model.state_dict()
    frozen = [k for k in before if not k.startswith("layer4")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("layer4"))
    built.model.train()
    set_frozen_batchnorm_eval(built.model)
    assert not built.model.bn1.training and built.model.layer4[0].bn1.training


def test_offline_imagenet_checkpoint_still_sees_a_cat(tmp_path: Path, monkeypatch) -> None:
    """The packaged legacy file, converted to safetensors, recognises scikit-image's cat
    photo (Chelsea) as a cat among the top 3 of ImageNet's 1000 classes."""
    from safetensors import safe_open
    from skimage import data as samples
    from torchvision.models import ResNet18_Weights

    from tunewise.pretrained.imagenet import CHECKPOINT_NAME, efficientnet_lite0_checkpoint

    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path))
    path = efficientnet_lite0_checkpoint()
    assert path == tmp_path / CHECKPOINT_NAME
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["license"] == "Apache-2.0" and len(list(f.keys())) == 296
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(load_weights_file(path))  # strict: every tensor has its place
    model.eval()
    inputs = inputs_for(ModelSpec(architecture="efficientnet_lite0"))
    pixels = inputs.transform()(Image.fromarray(samples.chelsea()))
    with torch.no_grad():
        top3 = model(pixels[None]).softmax(-1)[0].topk(3).indices.tolist()
    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet's class names
    names = [categories[i] for i in top3]
    assert any("cat" in name.lower() for name in names), names
    # made once: a second call reuses the file
    mtime = path.stat().st_mtime_ns
    assert efficientnet_lite0_checkpoint() == path and path.stat().st_mtime_ns == mtime


def test_weights_files_load_safely(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    spec = ModelSpec(architecture="resnet18", init="pretrained")
    reference = build_image_model(ModelSpec(architecture="resnet18", init="random"), ["a", "b"]).model
    import torchvision

    imagenet = torchvision.models.resnet18(weights=None).state_dict()
    save_file({k: v.contiguous() for k, v in imagenet.items()}, str(tmp_path / "r18.safetensors"))
    built = build_image_model(spec, ["a", "b"], pretrained=f"resnet18={tmp_path / 'r18.safetensors'}")
    assert torch.equal(built.model.conv1.weight, imagenet["conv1.weight"])
    assert not torch.equal(built.model.conv1.weight, reference.conv1.weight)
    # a legacy .pth of tensors loads with weights_only=True; one that needs code does not
    torch.save(imagenet, tmp_path / "r18.pth")
    assert set(load_weights_file(tmp_path / "r18.pth")) == set(imagenet)
    torch.save({"weights": imagenet, "optimizer": Console}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="weights_only=True"):
        load_weights_file(tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="names 'mobilenet_v2', but the recipe builds 'resnet18'"):
        build_image_model(spec, ["a", "b"], pretrained=f"mobilenet_v2={tmp_path / 'r18.safetensors'}")
    with pytest.raises(ModelError, match="not resnet18 ImageNet weights"):
        save_file({"conv1.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        build_image_model(spec, ["a", "b"], pretrained=str(tmp_path / "other.safetensors"))
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_image_model(ModelSpec(architecture="customcnn", init="random"), ["a", "b"], pretrained="x")
    # in a comparison every arm gets the same --pretrained: the from-scratch arm ignores it
    with pytest.raises(DataError, match="cannot split 8 examples of 2 labels"):
        prepare_images(make_images(tmp_path / "few", per_class=4), seed=0)
    data = prepare_images(make_images(tmp_path / "imgs", per_class=10), seed=0)
    opts = TrainOptions(
        data=tmp_path / "imgs",
        recipe=load_recipe("image-scratch"),
        out=tmp_path / "o",
        pretrained=f"resnet18={tmp_path / 'r18.safetensors'}",
    )
    assert get_track("image").build(opts, data, None, Console(quiet=True)).source == "random"


def test_torchvision_weights_download_or_say_what_to_do(tmp_path: Path, monkeypatch) -> None:
    """Through torchvision's weights enum: downloaded where the internet is reachable; where
    it is not (CI), a clear error that names the offline ways instead of a traceback."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    try:
        built = build_image_model(ModelSpec(architecture="mobilenet_v2"), ["a", "b"])
    except ModelError as e:
        assert "cannot download MobileNet_V2_Weights.IMAGENET1K_V2" in str(e)
        assert "--pretrained mobilenet_v2=PATH" in str(e) and "efficientnet_lite0" in str(e)
    else:
        assert built.source == "torchvision:MobileNet_V2_Weights.IMAGENET1K_V2"


# --- data ---------------------------------------------------------------------------


def test_bad_files_are_reported_with_their_path_and_skipped(tmp_path: Path) -> None:
    root = make_images(tmp_path / "imgs")
    add_bad_files(root)
    loaded = load_images(root)
    assert len(loaded.examples) == 24
    reasons = {Path(p.source).name: p.reason for p in loaded.problems}
    assert set(reasons) == {"imageNotFound.gif", "truncated.jpg", "notes.jpg"}  # .DS_Store: not data
    assert reasons["imageNotFound.gif"].startswith("not an image type tunewise reads (.gif")
    assert reasons["notes.jpg"] == "not an image Pillow can read"
    assert reasons["truncated.jpg"].startswith("cannot decode")
    assert str(loaded.problems[0]).startswith(str(root))  # the full path, where a user can fix it
    assert check_image(root / "red" / "red00.jpg") is None


def test_split_folders_keep_their_split_and_val_without_test_is_the_test_split(tmp_path: Path) -> None:
    make_images(tmp_path / "data" / "train", per_class=10, seed=1)
    make_images(tmp_path / "data" / "val", per_class=4, seed=2)
    data = prepare_images(tmp_path / "data", seed=0)
    assert {s: len(x) for s, x in data.splits.items()} == {"train": 18, "dev": 2, "test": 8}
    assert all("/val/" in e.text for e in data.splits["test"])
    assert all("/train/" in e.text for e in data.splits["train"] + data.splits["dev"])
    assert any("carved from train/" in note for note in data.report.notes)
    # with a test folder too, val is the dev split
    make_images(tmp_path / "data" / "test", per_class=3, seed=3)
    data = prepare_images(tmp_path / "data", seed=0)
    assert {s: len(x) for s, x in data.splits.items()} == {"train": 20, "dev": 8, "test": 6}


def test_image_lists_duplicates_and_conflicts(tmp_path: Path) -> None:
    root = make_images(tmp_path / "imgs", per_class=6)
    (tmp_path / "imgs" / "red" / "copy.jpg").write_bytes((root / "red" / "red00.jpg").read_bytes())
    (tmp_path / "imgs" / "blue" / "mislabelled.jpg").write_bytes((root / "red" / "red01.jpg").read_bytes())
    rows = ["path,label"]
    rows += [f"imgs/{lab}/{lab}{i:02d}.jpg,{lab}" for lab in ("blue", "red") for i in range(6)]
    rows += ["imgs/red/copy.jpg,red", "imgs/blue/mislabelled.jpg,blue", "imgs/red/gone.jpg,red"]
    listing = tmp_path / "images.csv"
    listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = prepare_images(listing, fractions=(0.5, 0.25, 0.25), seed=0)
    assert data.report.duplicates == 1
    conflicts = [str(p) for p in data.report.conflicts]
    assert len(conflicts) == 2 and all("also labelled" in c for c in conflicts)
    assert [str(p) for p in data.report.problems] == [
        f"{listing}:16: {tmp_path / 'imgs/red/gone.jpg'}: no such image file"
    ]
    assert sum(len(x) for x in data.splits.values()) == 11
    # split keys are the images' bytes: the same images elsewhere get the same keys
    keys = data.split_keys()
    moved = tmp_path / "moved"
    (tmp_path / "imgs").rename(moved)
    listing.write_text("\n".join(rows).replace("imgs/", "moved/") + "\n", encoding="utf-8")
    assert prepare_images(listing, fractions=(0.5, 0.25, 0.25), seed=0).split_keys() == keys
    with pytest.raises(DataError, match="no image path column"):
        (tmp_path / "bad.csv").write_text("text,label\na,b\n", encoding="utf-8")
        prepare_images(tmp_path / "bad.csv")


def test_augmentation_is_seeded_by_seed_epoch_and_image(tmp_path: Path) -> None:
    root = make_images(tmp_path / "imgs", per_class=2)
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    transform = inputs_for(ModelSpec(architecture="customcnn", init="random")).transform("strong")
    a, b = ImageDataset(paths, None, transform, seed=0), ImageDataset(paths, None, transform, seed=0)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    assert torch.equal(a[0][1], b[0][1])  # same (seed, epoch, image): the same crop
    assert torch.equal(torch.get_rng_state(), state)  # and the global generator untouched
    b.use_epoch(1)
    assert not torch.equal(a[0][1], b[0][1])
    assert collate_images([a[0], a[1]])["x"].shape == (2, 3, 32, 32)


# --- training through the one loop ------------------------------------------------------


def test_image_recipes_are_valid_and_name_their_track() -> None:
    for name in ("image-scratch", "image-finetune", "image-features"):
        assert load_recipe(name).track == "image"
    note = load_recipe("image-finetune")
    assert [(s.name, s.epochs) for s in note.resolved_stages()] == [("head", 5), ("last_block", 5)]
    assert note.scheduler.name == "plateau" and note.scheduler.mode == "min" and note.scheduler.patience == 10
    assert (note.batch_size, note.augmentation, note.optimizer.name, note.optimizer.lr) == (
        32,
        "mild",
        "adam",
        1e-4,
    )
    # stretched to a tuning budget, each stage stops once its dev score stalls (20% of the stage)
    from tunewise.training.loop import stage_patience
    from tunewise.tuning import stretch

    long = stretch(note, 100)
    assert [stage_patience(long, s) for s in long.resolved_stages()] == [10, 10]
    assert [stage_patience(note, s) for s in note.resolved_stages()] == [3, 3]
    scratch = load_recipe("image-scratch")
    assert (scratch.model.architecture, scratch.batch_size, scratch.epochs, scratch.augmentation) == (
        "customcnn",
        64,
        50,
        "strong",
    )
    assert "track" not in load_recipe("scratch").model_dump(mode="json")  # text recipes dump as before
    with pytest.raises(Exception, match="track 'text' has no architecture 'resnet18'"):
        parse_recipe({"name": "x", "model": {"architecture": "resnet18"}})
    with pytest.raises(Exception, match="track 'image' has no architecture 'textcnn'"):
        parse_recipe({"name": "x", "track": "image", "model": {"architecture": "textcnn", "init": "random"}})


def test_train_an_image_model_end_to_end(tmp_path: Path) -> None:
    """``train_model`` on a folder with bad files: the same loop, checkpoints, calibration and
    saved directory as text; the saved model is rebuilt from its config and scores as dev did."""
    root = make_images(tmp_path / "imgs", per_class=12)
    add_bad_files(root)
    recipe = load_recipe("image-scratch").with_epochs(4)
    out = tmp_path / "model"
    outcome = train_model(
        TrainOptions(data=root, recipe=recipe, out=out, show_progress=False, log_with=None),
        Console(quiet=True),
    )
    meta = json.loads((out / "tunewise.json").read_text(encoding="utf-8"))
    assert meta["track"] == "image" and meta["image_size"] == 32 and meta["architecture"] == "customcnn"
    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))
    assert len(report["unusable_rows"]) == 3
    assert outcome.fit.epochs_run == 4 and outcome.dev_metrics["macro_f1"] == 1.0  # red vs blue
    model, inputs, labels = load_image_model(out)
    assert labels == ["blue", "red"] and inputs.size == 32
    track = get_track("image")
    logits = track.logits(out, outcome.data.splits["test"])
    truth = outcome.data.label_ids("test")
    assert (logits.argmax(1) == np.asarray(truth)).mean() == 1.0
    assert outcome.calibration is not None and outcome.calibration.temperature > 0
    # resuming a finished run changes nothing and trains no more epochs
    again = train_model(
        TrainOptions(data=root, recipe=recipe, out=out, resume=True, show_progress=False, log_with=None),
        Console(quiet=True),
    )
    assert again.fit.epochs_run == 4


def test_image_finetune_trains_the_head_then_the_last_block(tmp_path: Path, monkeypatch) -> None:
    """The note's staged schedule on the offline ImageNet network: stage 1 the head alone,
    stage 2 the last block too at 1e-5, BatchNorm of the frozen blocks in eval mode."""
    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    root = make_images(tmp_path / "imgs", per_class=6)
    recipe = load_recipe("image-finetune").with_epochs(2).model_copy(update={"eval_batch_size": 8})
    spec = recipe.model.model_copy(update={"image_size": 64})
    recipe = recipe.model_copy(update={"model": spec})
    outcome = train_model(
        TrainOptions(data=root, recipe=recipe, out=tmp_path / "ft", show_progress=False, log_with=None),
        Console(quiet=True),
    )
    head, last = outcome.fit.stages
    assert head["trainable_params"] == 1280 * 512 + 512 + 512 * 2 + 2
    assert last["trainable_params"] > head["trainable_params"] and last["lr_groups"] == 2
    built = build_image_model(recipe.model, ["blue", "red"])
    apply_initial_freeze(built.model, recipe)
    apply_stage(built.model, recipe.resolved_stages()[1], recipe)
    trainable = {
        n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks") else "")
        for n, p in built.model.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"blocks.6", "conv_head", "bn2", "classifier"}
    from tunewise.training.optim import build_param_groups

    rates = {g["name"]: g["lr"] for g in build_param_groups(built.model, recipe, recipe.resolved_stages()[1])}
    assert rates == {"last_block": 1e-5, "head": 1e-2}


@pytest.mark.skipif(not (SHARED / "hymenoptera").is_dir(), reason="needs ../shared/data/hymenoptera")
def test_hymenoptera_reads_as_the_tutorial_describes() -> None:
    loaded = load_images(SHARED / "hymenoptera")
    assert [Path(p.source).name for p in loaded.problems] == ["imageNotFound.gif"]
    data = prepare_images(SHARED / "hymenoptera", seed=0)
    sizes = {s: len(x) for s, x in data.splits.items()}
    assert sizes["train"] + sizes["dev"] == 244 and sizes["test"] == 153  # val/ is the test split
    assert data.report.counts["test"] == {"ants": 70, "bees": 83}


def test_image_cache_decodes_once_keeps_the_aspect_and_stays_in_bounds(tmp_path: Path) -> None:
    from tunewise.data.image_cache import ImageCache, _max_bytes_from_env, decode, working_side

    photo = tmp_path / "photo.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (750, 1000, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo, quality=90)
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(small)

    cache = ImageCache()
    side = working_side(224)
    assert side == 374  # 5/3 of 224: RandomResizedCrop's smallest crop never needs enlarging
    assert cache.get(photo, side).size == (499, 374)  # shorter side 374, 4:3 kept
    assert cache.get(small, side).size == (32, 32)  # never enlarged
    assert cache.get(photo, side) is cache.get(photo, side)
    assert cache.stats()["misses"] == 2 and cache.stats()["hits"] == 2

    # the reduced image evaluates as the whole one would (resize 256, centre crop 224)
    transform = inputs_for(ModelSpec(architecture="efficientnet_lite0", init="random")).transform()
    whole, reduced = transform(decode(photo)), transform(cache.get(photo, side))
    assert whole.shape == reduced.shape == (3, 224, 224)
    assert float((whole - reduced).abs().mean()) < 0.08  # noise: the worst case for resampling

    # a file replaced on disk (same byte size, newer time) is decoded again, its old pixels dropped
    bmp = tmp_path / "swap.bmp"
    Image.new("RGB", (400, 300), (255, 0, 0)).save(bmp)
    os.utime(bmp, ns=(10**18, 10**18))
    held = cache.stats()["bytes"]
    assert cache.get(bmp, 100).getpixel((0, 0)) == (255, 0, 0)
    size = bmp.stat().st_size
    Image.new("RGB", (400, 300), (0, 0, 255)).save(bmp)
    os.utime(bmp, ns=(2 * 10**18, 2 * 10**18))
    assert bmp.stat().st_size == size
    assert cache.get(bmp, 100).getpixel((0, 0)) == (0, 0, 255)
    assert cache.stats()["images"] == 3 and cache.stats()["bytes"] == held + 133 * 100 * 3

    # bounded: the least recently used image goes first; one larger than the bound is not kept
    other = tmp_path / "other.png"
    Image.new("RGB", (32, 32), (0, 200, 0)).save(other)
    tight = ImageCache(max_bytes=32 * 32 * 3)
    tight.get(small, side), tight.get(other, side), tight.get(photo, side)
    assert tight.stats() == {"images": 1, "bytes": 3072, "hits": 0, "misses": 3, "evicted": 1}
    assert tight.get(other, side).getpixel((0, 0)) == (0, 200, 0) and tight.stats()["hits"] == 1

    photo.unlink()
    with pytest.raises(DataError, match="photo.jpg: cannot read the image any more"):
        cache.get(photo, side)
    os.environ["TUNEWISE_IMAGE_CACHE_BYTES"] = "inf"
    try:
        with pytest.raises(DataError, match="TUNEWISE_IMAGE_CACHE_BYTES='inf'"):
            _max_bytes_from_env()
    finally:
        del os.environ["TUNEWISE_IMAGE_CACHE_BYTES"]


def test_training_loaders_decode_each_image_once_and_see_what_evaluation_sees(
    tmp_path: Path, monkeypatch
) -> None:
    from types import SimpleNamespace

    import tunewise.data.image_cache as image_cache
    from tunewise.tracks.image import ImageTrack, image_logits

    data = prepare_images(make_images(tmp_path / "imgs", per_class=6, size=(120, 90)), seed=0)
    monkeypatch.setattr(image_cache, "_shared", image_cache.ImageCache())
    opened: list[str] = []
    real = image_cache.decode
    monkeypatch.setattr(
        image_cache, "decode", lambda path, side=None: opened.append(str(path)) or real(path, side)
    )
    recipe = load_recipe("image-scratch")
    inputs = inputs_for(recipe.model.model_copy(update={"image_size": 48}))
    built = SimpleNamespace(inputs=inputs)
    train, select = data.splits["train"], data.splits["dev"]
    train_loader, select_loader = ImageTrack().loaders(built, train, select, data.labels, recipe, seed=0)
    for epoch in range(3):
        train_loader.dataset.use_epoch(epoch)
        for _ in train_loader:
            pass
        for _ in select_loader:
            pass
    assert sorted(opened) == sorted(e.text for e in train + select)  # 3 epochs, each image once
    assert image_cache.shared_cache().stats()["images"] == len(train) + len(select)

    # dev during training is exactly what evaluation and prediction feed the network
    model = build_image_model(recipe.model.model_copy(update={"image_size": 48}), data.labels).model.eval()
    with torch.no_grad():
        during = torch.cat([model(b["x"]) for b in select_loader]).numpy()
    after = image_logits(model, inputs, [e.text for e in select])
    np.testing.assert_allclose(during, after, rtol=0, atol=1e-5)
