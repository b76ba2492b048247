"""The files Slider Studio ships beside its code, found the same way in every install form.

The repository keeps them at its top level: `presets/` (target, LyCORIS and full-size presets: JSON
the product ships) and `resources/` (the toy model). `pyproject.toml` maps the two folders into the
package as the resource packages `sliderstudio.presets` and `sliderstudio.resources`, so a wheel, the
editable install (setuptools' editable finder) and the PyInstaller bundle each put them somewhere
else. Path arithmetic from `__file__` gets at most one of those right, so every read goes through
this module and `importlib.resources`. `config_data/` (the engine's own tables: SimpleTuner's key
registry, the prompt library, the planner's constants) stays inside the package and is read here too.

One exception to "ask importlib": when `sliderstudio` itself runs from a source checkout, that
checkout's own `presets/` and `resources/` win over whatever the import system maps. Without an
install (`PYTHONPATH=checkout`) nothing maps the names at all, and in a venv that holds the editable
install of a *different* checkout, importlib would hand out the other checkout's presets.
"""
from __future__ import annotations

import atexit
import contextlib
import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import sliderstudio
from sliderstudio.kernel.config_files import parse_json
from sliderstudio.kernel.errors import ResourceMissingError

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

#: The preset folders below `presets/`: per-family target presets, LyCORIS presets, full-size configs.
PRESET_KINDS = ("targets", "lycoris", "full_size")
#: The top-level folders mapped into the package as `sliderstudio.<name>`.
SHIPPED = ("presets", "resources")
TOY_MODEL = "toy-model"

#: Files that `as_file` had to extract (a zipped install) stay extracted until the process ends,
#: because callers keep the path (diffusers' from_pretrained reads the toy model lazily).
_EXTRACTED = contextlib.ExitStack()
atexit.register(_EXTRACTED.close)


def package_dir() -> Path:
    """The folder of the imported `sliderstudio` package (site-packages, a checkout, a bundle)."""
    return Path(sliderstudio.__file__).resolve().parent


def checkout_folder(name: str) -> Path | None:
    """`<checkout>/<name>` when `sliderstudio` is imported from a source checkout that has it."""
    root = package_dir().parent
    folder = root / name
    if (root / "pyproject.toml").is_file() and (folder / "__init__.py").is_file():
        return folder
    return None


def _imported(name: str) -> Traversable | None:
    """`files("sliderstudio.<name>")` when the import system finds it inside (wheel, bundle) or beside
    (checkout) the imported package; None when it does not, or finds another checkout's folder."""
    try:
        spec = importlib.util.find_spec(f"sliderstudio.{name}")
    except ModuleNotFoundError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    here = package_dir()
    if locations and all(Path(p).resolve() in (here / name, here.parent / name) for p in locations):
        return resources.files(f"sliderstudio.{name}")
    return None


@cache
def shipped_root(name: str) -> Traversable:
    """The top of `sliderstudio.presets` or `sliderstudio.resources` in this install."""
    if name not in SHIPPED:
        raise ValueError(f"not a shipped folder: {name!r} (one of {', '.join(SHIPPED)})")
    found = _imported(name)
    if found is not None:
        return found
    inside = resources.files("sliderstudio") / name  # the installed layout, should the import fail
    if inside.is_dir():
        return inside
    checkout = checkout_folder(name)
    if checkout is not None:
        return checkout
    raise ResourceMissingError(f"the package 'sliderstudio.{name}' is missing from this installation",
                               file=package_dir() / name)


def real_path(item: Traversable) -> Path:
    """A filesystem path for a shipped file or folder, for code that needs one (diffusers, torch).

    Installed wheels, checkouts and the bundle are plain folders, so this is the path itself; from a
    zipped install `importlib.resources.as_file` extracts it (folders need Python 3.12) and the copy
    lives until the process ends.
    """
    if isinstance(item, Path):
        return item
    return _EXTRACTED.enter_context(resources.as_file(item))


def presets_dir(kind: str) -> Traversable:
    """`presets/<kind>/` for kind in PRESET_KINDS."""
    if kind not in PRESET_KINDS:
        raise ValueError(f"not a preset kind: {kind!r} (one of {', '.join(PRESET_KINDS)})")
    return shipped_root("presets") / kind


def preset_names(kind: str) -> list[str]:
    """The shipped presets of one kind, by file stem, sorted."""
    folder = presets_dir(kind)
    return sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".json") and item.is_file())


def preset_path(kind: str, name: str) -> Traversable:
    """`presets/<kind>/<name>.json` (it may not exist: `has_preset` / `read_preset` check)."""
    return presets_dir(kind) / f"{name}.json"


def has_preset(kind: str, name: str) -> bool:
    return preset_path(kind, name).is_file()


def read_preset(kind: str, name: str) -> Any:
    """The parsed JSON of a shipped preset; a missing one is an installation problem, named."""
    item = preset_path(kind, name)
    if not item.is_file():
        raise ResourceMissingError(f"no shipped {kind} preset '{name}'", file=_shown(item), key=kind, value=name)
    return parse_json(item.read_text(encoding="utf-8"), _shown(item))


def toy_model_dir() -> Path:
    """The bundled toy model's folder (diffusers layout), as a real path for from_pretrained."""
    return real_path(shipped_root("resources") / TOY_MODEL)


def config_data(*parts: str) -> Traversable:
    """A file of the engine's tables in `sliderstudio/config_data/` (inside the package)."""
    return resources.files("sliderstudio").joinpath("config_data", *parts)


def read_config_data(*parts: str) -> str:
    return config_data(*parts).read_text(encoding="utf-8")


def _shown(item: Traversable) -> str:
    """How an error names a shipped file: its path where it has one."""
    return str(item) if isinstance(item, Path) else getattr(item, "name", repr(item))
