"""The track seam: text works without the vision extra, and images without it fail with an
error that says what to install — never an ImportError traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunewise.errors import RecipeError
from tunewise.recipes import load_recipe
from tunewise.tracks import TRACKS, get_track, track_of

# run in a fresh interpreter where torchvision and timm cannot be imported
WITHOUT_VISION = "import sys\nfor name in ('torchvision', 'timm'):\n    sys.modules[name] = None\n"


def test_tracks_are_named_by_recipes_and_saved_models() -> None:
    assert set(TRACKS) == {"text", "image"}
    assert get_track(load_recipe("scratch").track).name == "text"
    assert track_of({}) == "text" and track_of({"track": "image"}) == "image"
    with pytest.raises(RecipeError, match="no track 'audio'"):
        get_track("audio")


def test_text_needs_no_vision_extra_and_images_say_what_to_install(tmp_path: Path) -> None:
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "imgs" / label / f"{i}.png")
    script = WITHOUT_VISION + (
        "import tunewise.cli, tunewise.training.run, tunewise.evaluation, tunewise.compare\n"
        "import tunewise.export, tunewise.service\n"
        "from tunewise.cli import app\n"
        "app()\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "compare",
            "--data",
            str(tmp_path / "imgs"),
            "--out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "images need torchvision and timm: pip install 'tunewise[vision]'" in result.stderr
    assert "Traceback" not in result.stderr
