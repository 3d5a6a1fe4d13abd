"""An image model through the same system as text: the command line (train, evaluate,
predict, export), ONNX Runtime parity, the HTTP service on loopback and its web page in a
real headless Chromium, a dropped image included."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

if os.environ.get("TUNEWISE_REQUIRE_VISION") != "1":  # CI sets it: there the tests must run
    pytest.importorskip("torchvision", reason="images need the vision extra: pip install 'tunewise[vision]'")
    pytest.importorskip("timm", reason="images need the vision extra: pip install 'tunewise[vision]'")

from PIL import Image
from typer.testing import CliRunner

from tunewise.cli import app
from tunewise.errors import ExportError
from tunewise.export import export_onnx
from tunewise.service import ImageLimits, create_image_app
from tunewise.tracks.image import ImagePredictor

from .conftest import LiveServer
from .test_images import add_bad_files, make_images

runner = CliRunner()
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">.jpg'


def cli(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


@pytest.fixture(scope="module")
def image_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, model) trained by the command line: the note's CustomCNN, 4 epochs."""
    tmp = tmp_path_factory.mktemp("images")
    data = make_images(tmp / "data", per_class=12)
    add_bad_files(data)
    out = tmp / "model"
    summary = json.loads(
        cli(
            "train", "--data", data, "--recipe", "image-scratch", "--epochs", 4, "--out", out, "--no-progress"
        )
    )
    assert summary["dev_macro_f1"] == 1.0
    return data, out


def jpeg(colour: tuple[int, int, int], size=(60, 45)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_evaluate_and_predict_from_the_command_line(image_model, tmp_path: Path) -> None:
    data, model = image_model
    metrics = json.loads(cli("evaluate", "--model", model, "--data", data))
    assert metrics["split"] == "test" and metrics["accuracy"] == 1.0
    assert (model / "confusion_matrix.png").is_file()
    one = json.loads(cli("predict", "--model", model, "--image", data / "red" / "red03.jpg"))
    assert one["label"] == "red" and set(one["probabilities"]) == {"blue", "red"}
    out = tmp_path / "predictions.csv"
    result = runner.invoke(
        app, ["predict", "--model", str(model), "--input", str(data), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = out.read_text(encoding="utf-8-sig").splitlines()
    assert rows[0] == "image,label,p_blue,p_red,width,height" and len(rows) == 1 + 24
    assert "3 skipped" in result.output and "imageNotFound.gif" in result.output
    bad = runner.invoke(app, ["predict", "--model", str(model), "--image", str(data / "blue" / "notes.jpg")])
    assert bad.exit_code == 2 and "not an image Pillow can read" in bad.output
    wrong = runner.invoke(app, ["predict", "--model", str(model), "--text", "您好"])
    assert wrong.exit_code == 2 and "classifies images" in wrong.output
    # the fraud-score threshold is a text model's: a clear error, not a tokenizer traceback
    text_only = runner.invoke(
        app, ["threshold", "--model", str(model), "--data", str(data), "--target-precision", "0.9"]
    )
    assert text_only.exit_code == 2 and "is an image model; this needs a text model" in text_only.output


def test_onnx_export_matches_pytorch(image_model, tmp_path: Path) -> None:
    data, model = image_model
    report = export_onnx(model, tmp_path / "onnx", eval_data=data)
    assert report["fp32"]["max_prob_diff"] <= 1e-4 and report["input"]["shape"] == ["batch", 3, 32, 32]
    assert report["eval"]["onnx_fp32"] == report["eval"]["pytorch"] == 1.0
    onnx = ImagePredictor(tmp_path / "onnx")  # no weights in the export: ONNX Runtime
    torch_ = ImagePredictor(model, backend="torch")
    assert onnx.backend == "onnx" and torch_.backend == "torch"
    images = [data / "red" / "red00.jpg", data / "blue" / "blue05.jpg"]
    assert (
        [p.label for p in onnx.predict(images)]
        == [p.label for p in torch_.predict(images)]
        == ["red", "blue"]
    )
    with pytest.raises(ExportError, match="int8"):
        export_onnx(model, tmp_path / "int8", quantize=True)


def test_image_service_over_http(image_model) -> None:
    _, model = image_model
    app_ = create_image_app(
        ImagePredictor(model),
        model_dir=model,
        limits=ImageLimits(max_body_bytes=200_000, max_pixels=1_000_000),
        api_key="s3cret",
    )
    key = {"X-API-Key": "s3cret"}
    with LiveServer(app_) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        assert httpx.post(f"{url}/v1/classify-image", content=jpeg((220, 30, 40))).status_code == 401
        info = httpx.get(f"{url}/v1/model", headers=key).json()
        assert info["track"] == "image" and info["labels"] == ["blue", "red"] and info["image_size"] == 32
        r = httpx.post(f"{url}/v1/classify-image?name=red.jpg", content=jpeg((220, 30, 40)), headers=key)
        assert r.status_code == 200, r.text
        result = r.json()["results"][0]
        assert (result["label"], result["image"], result["width"], result["height"]) == (
            "red",
            "red.jpg",
            60,
            45,
        )
        assert (
            httpx.post(f"{url}/v1/classify-image", content=jpeg((20, 30, 230)), headers=key).json()[
                "results"
            ][0]["label"]
            == "blue"
        )
        bad = httpx.post(f"{url}/v1/classify-image", content=b"GIF89a nonsense", headers=key)
        assert bad.status_code == 422 and "not an image Pillow can read" in bad.json()["detail"]
        empty = httpx.post(f"{url}/v1/classify-image", content=b"", headers=key)
        assert empty.status_code == 422 and "empty" in empty.json()["detail"]
        huge = httpx.post(f"{url}/v1/classify-image", content=b"\0" * 300_000, headers=key)
        assert huge.status_code == 413
        # a small file that decodes to many pixels is refused after decoding its header
        buffer = io.BytesIO()
        Image.new("RGB", (2000, 1000), (255, 255, 255)).save(buffer, format="PNG")
        assert len(buffer.getvalue()) < 200_000
        wide = httpx.post(f"{url}/v1/classify-image", content=buffer.getvalue(), headers=key)
        assert wide.status_code == 413 and "2000x1000 pixels" in wide.json()["detail"]
        # the name is a label for the result, never a path the server opens
        named = httpx.post(
            f"{url}/v1/classify-image?name={model / 'config.json'}", content=b"not an image", headers=key
        )
        assert named.status_code == 422 and "labels" not in named.text


def test_page_classifies_a_dropped_image(browser, image_model) -> None:
    """A file dropped on the page (a real drop event with a DataTransfer) and one chosen in
    the file dialog are classified; a broken file shows its error, its name never as HTML."""
    _, model = image_model
    with LiveServer(create_image_app(ImagePredictor(model), model_dir=model)) as url:
        page = browser.new_page()
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('labels')")
        transfer = page.evaluate_handle(
            """(bytes) => {
                const dt = new DataTransfer();
                dt.items.add(new File([new Uint8Array(bytes)], 'dropped.jpg', {type: 'image/jpeg'}));
                return dt;
            }""",
            list(jpeg((230, 20, 30))),
        )
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_selector(".row")
        row = page.locator(".row").first
        assert row.locator(".label").text_content() == "red"
        assert "dropped.jpg · 60x45" in row.text_content()
        assert page.locator(".row .bar").count() == 2
        page.set_input_files(
            "#files",
            [
                {"name": "blue.jpg", "mimeType": "image/jpeg", "buffer": jpeg((10, 20, 240))},
                {"name": HOSTILE_NAME, "mimeType": "image/jpeg", "buffer": b"not an image"},
            ],
        )
        page.wait_for_function("document.querySelectorAll('.row').length === 2")
        page.wait_for_selector(".error")
        assert page.locator(".row").first.locator(".label").text_content() == "blue"
        error = page.locator(".error").text_content()
        assert HOSTILE_NAME in error and "not an image Pillow can read" in error
        assert page.evaluate("window.__pwned") is None


def test_image_demo_runs_the_notes_comparison(tmp_path: Path, monkeypatch) -> None:
    """``tunewise demo --images`` end to end on a small slice of scikit-learn's digits."""
    from tunewise.demo_images import ImageDemoOptions, run_image_demo

    monkeypatch.setenv("TUNEWISE_CACHE", str(tmp_path / "cache"))
    summary = run_image_demo(
        ImageDemoOptions(
            out=tmp_path / "demo",
            fractions=[0.5, 1.0],
            epochs={"image-scratch": 2, "image-finetune": 2},
            image_size={"image-finetune": 32},
            per_class=12,
            examples=4,
        )
    )
    results = summary["results"]
    assert results["track"] == "image" and results["order"] == ["image-scratch", "image-finetune"]
    assert len(results["runs"]) == 4 and len(list((tmp_path / "demo" / "digits").glob("*/*.png"))) == 120
    assert summary["final_recipe"] in ("image-scratch", "image-finetune")
    assert len(summary["predictions"]) == 4
    report = Path(summary["report"]["markdown"]).read_text(encoding="utf-8")
    assert "the note's CustomCNN" in report and "labelled images" in report
    assert ImagePredictor(summary["model"]).labels == [str(d) for d in range(10)]


def test_compare_sizes_each_image_recipe_from_the_command_line(image_model, tmp_path: Path) -> None:
    """``--image-size RECIPE=SIZE`` gives each arm its own input (the CustomCNN its 32x32, the
    ImageNet network more pixels); a name the comparison does not run is a clear error."""
    data, _ = image_model
    out = tmp_path / "c"
    cli(
        *["compare", "--data", data, "--out", out, "--recipes", "image-scratch,image-finetune"],
        *["--fractions", "1", "--seeds", "1", "--epochs", "2", "--image-size", "image-finetune=48"],
    )
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    recipes = results["recipes"]  # {name: the recipe each arm ran}
    assert recipes["image-finetune"]["model"]["image_size"] == 48
    assert recipes["image-scratch"]["model"].get("image_size") is None  # its own 32x32

    def fails(*args: str) -> str:
        result = runner.invoke(app, ["compare", "--data", str(data), "--out", str(tmp_path / "d"), *args])
        assert result.exit_code == 2, result.output
        return " ".join(result.output.split())

    assert "'image-fintune', which this comparison does not run" in fails("--image-size", "image-fintune=48")
    assert "names 'image-scratch' twice" in fails("--image-size", "image-scratch=32,image-scratch=48")
    assert "'scratch': not an image recipe" in fails("--recipes", "scratch", "--image-size", "scratch=32")
    assert "expected a whole number of pixels, got 'big'" in fails("--image-size", "big")
    # runs made when images were read whole are not mixed with runs on reduced images
    stored = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert stored["image_decode_side_factor"] == round(5 / 3, 6)
    del stored["image_decode_side_factor"]
    (out / "results.json").write_text(json.dumps(stored), encoding="utf-8")
    again = runner.invoke(
        app,
        [
            *["compare", "--data", str(data), "--out", str(out), "--recipes", "image-scratch,image-finetune"],
            *["--fractions", "1", "--seeds", "1", "--epochs", "2", "--image-size", "image-finetune=48"],
        ],
    )
    assert again.exit_code == 2 and "read images whole" in " ".join(again.output.split())


def test_prediction_feeds_the_network_as_evaluation_does(image_model, tmp_path: Path) -> None:
    """Files and bytes reach the network reduced and resized exactly as the test split did
    during training (``decode_side`` in the model's config)."""
    from tunewise.tracks.image import image_logits, load_image_model

    _, model_dir = image_model
    rng = np.random.default_rng(1)
    paths = []
    for i in range(4):  # larger than the 54-pixel side the CustomCNN's inputs are reduced to
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)).save(paths[-1])
    model, inputs, _ = load_image_model(model_dir)
    assert inputs.decode_side == 54  # 5/3 of the CustomCNN's 32
    expected = image_logits(model, inputs, paths)
    predictor = ImagePredictor(model_dir, backend="torch")
    as_files, info = predictor.logits(paths)
    as_bytes, _ = predictor.logits([Path(p).read_bytes() for p in paths])
    np.testing.assert_allclose(as_files, expected, atol=1e-5)
    np.testing.assert_allclose(as_bytes, expected, atol=1e-5)
    assert info[0][1:] == Image.open(paths[0]).size  # the size reported is the image's own


def test_predict_under_two_processes_writes_the_same_file(image_model, tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import accelerate_launch

    data, model = image_model
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"p{n}" / "predictions.csv"
        args = [
            "-m",
            "tunewise",
            "predict",
            "--model",
            str(model),
            "--input",
            str(data),
            "--output",
            str(out),
        ]
        command = [sys.executable, *args] if n == 1 else [*accelerate_launch(2), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stderr.count("wrote ") == 1  # the main process reports, once
        outputs[n] = out.read_bytes()
        assert [p.name for p in out.parent.iterdir()] == ["predictions.csv"]  # no shard left behind
    assert outputs[1] == outputs[2] and outputs[1].count(b"\n") > 20
