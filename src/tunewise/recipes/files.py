"""Finding and reading recipe files, without validating them.

Kept apart from :mod:`tunewise.recipes.schema` (pydantic models, a fraction of a second to
import) so that the command line can say "no recipe 'scrach'" at once.
"""

from __future__ import annotations

from pathlib import Path

from tunewise.errors import RecipeError

BUILTIN_DIR = Path(__file__).parent / "builtin"


def builtin_recipes() -> list[str]:
    """Names of the recipes shipped with tunewise.

    Example:
        >>> "scratch" in builtin_recipes()
        True
    """
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def locate_recipe(name_or_path: str | Path) -> Path:
    """The file of a built-in recipe (by name) or of a recipe given as a path.

    Example:
        >>> locate_recipe("scratch").name
        'scratch.yaml'
    """
    path = Path(name_or_path)
    if not path.suffix and str(name_or_path) in builtin_recipes():
        path = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise RecipeError(
            f"no recipe {str(name_or_path)!r}: not a built-in ({', '.join(builtin_recipes())}) "
            "and no such YAML file"
        )
    return path


def read_recipe(name_or_path: str | Path) -> tuple[dict, Path]:
    """A recipe's fields as written (not validated yet) and its file; ``name`` defaults to the
    file's stem.

    Example:
        >>> raw, path = read_recipe("image-scratch")
        >>> raw["track"], path.name
        ('image', 'image-scratch.yaml')
    """
    path = locate_recipe(name_or_path)
    # imported here, not at the top: a misspelled name is reported before paying for them
    import yaml

    from tunewise.data.encoding import read_text

    try:
        raw = yaml.safe_load(read_text(path).text)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of fields, found {type(raw).__name__}")
    raw.setdefault("name", path.stem)
    return raw, path
