"""What goes into the PyInstaller bundle: hidden imports, data, metadata and exclusions.

Kept apart from the .spec file so the choices are plain functions that a fast test can check
without running PyInstaller. Runs in the build environment (the project's .venv), where
sliderstudio, diffusers and transformers are importable.

Why hidden imports are needed at all: diffusers, transformers and huggingface_hub import their
classes lazily *by name* (`getattr(diffusers, "UNet2DConditionModel")`, the class names in a
model's `model_index.json`, `AutoTokenizer` mappings), which PyInstaller's static analysis cannot
see. Collecting every submodule of transformers would add ~2,500 model files, so the model
packages are derived from the families Slider Studio supports (their pipelines' component
annotations) plus the text encoders those families load generically.
"""
from __future__ import annotations

import inspect
import os
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOY_MODEL_ENV = "SLIDERSTUDIO_TOY_MODEL"
TOY_MODEL_DEST = "sliderstudio/resources/toy-model"
#: Top-level folders of the repository and where the bundle puts them: the same place a wheel does
#: (pyproject.toml maps presets/ and resources/ to sliderstudio.presets / sliderstudio.resources).
SHIPPED_FOLDERS = {"presets": "sliderstudio/presets", "resources": "sliderstudio/resources",
                   "sliderstudio/config_data": "sliderstudio/config_data"}

#: Text encoders / tokenizers that pipelines annotate only as `PreTrainedModel` or `AutoTokenizer`
#: (Z-Image: Qwen3, Flux 2: Mistral 3 + Pixtral, Lumina 2: Gemma 2, HiDream: Llama, ...).
EXTRA_TRANSFORMERS_MODELS = frozenset({
    "auto", "clip", "t5", "umt5", "siglip", "qwen2", "qwen3", "qwen2_5_vl", "gemma", "gemma2",
    "llama", "mistral", "mistral3", "pixtral",
})

#: Pipelines outside the families' own that Slider Studio's code paths may still name.
EXTRA_DIFFUSERS_PIPELINES = frozenset({"stable_diffusion", "stable_diffusion_xl"})

#: Parts of the lazily imported packages that an app never runs (CLIs, benchmarks, test helpers).
SKIP_SUBMODULE_PARTS = frozenset({"commands", "benchmark", "test_utils", "testing_utils", "tests", "cli"})

#: Modules never needed in the app: other GUI toolkits, test runners, notebooks, unused Qt parts.
EXCLUDES = [
    "tkinter", "_tkinter", "turtle", "idlelib", "pytest", "_pytest", "pytest_qt", "IPython", "jupyter",
    "notebook", "matplotlib", "pandas", "tensorboard", "tensorflow", "jax", "flax", "onnx", "onnxruntime",
    "torchvision", "torchaudio", "deepspeed", "bitsandbytes", "gradio",
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtQuickControls2",
    "PySide6.QtNetwork", "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets", "PySide6.QtMultimedia",
    "PySide6.QtPdf", "PySide6.QtSql", "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools",
    "PySide6.QtXml", "PySide6.QtConcurrent", "PySide6.QtDBus", "PySide6.QtPrintSupport",
    "PySide6.Qt3DCore", "PySide6.QtCharts", "PySide6.QtDataVisualization", "PySide6.QtBluetooth",
    "torch.utils.tensorboard",
]

#: Distributions whose metadata is read at run time (`importlib.metadata.version(...)` checks in
#: diffusers/transformers/peft, and the GPU runtime's view of the bundled torch).
METADATA = [
    "torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "huggingface_hub",
    "tokenizers", "numpy", "pillow", "pydantic", "tqdm", "lycoris-lora", "PySide6-Essentials", "pip",
    "filelock", "packaging", "regex", "requests", "pyyaml", "jinja2", "psutil",
]

#: Shared libraries in the torch wheel that only torch's own tests load.
TORCH_TEST_LIBS = ("libtorchbind_test", "libaoti_custom_ops", "libbackend_with_compiler", "libjitbackend_test")


def _annotation_modules(annotation: object) -> set[str]:
    """Module names of the classes in an annotation, unions (`X | None`) included."""
    args = typing.get_args(annotation)
    if args:
        return set().union(*(_annotation_modules(a) for a in args))
    module = getattr(annotation, "__module__", "")
    return {module} if isinstance(module, str) and module else set()


def family_component_modules() -> set[str]:
    """Modules of every pipeline class and component class the registered families name."""
    import diffusers

    from sliderstudio.families.registry import FAMILIES

    modules: set[str] = set()
    for family in FAMILIES.values():
        cls = getattr(diffusers, family.pipeline_class_name)
        modules.add(cls.__module__)
        for param in inspect.signature(cls.__init__).parameters.values():
            modules |= _annotation_modules(param.annotation)
    return modules


def _package_below(modules: set[str], prefix: str) -> set[str]:
    """`diffusers.pipelines.flux.pipeline_flux` → `flux` for prefix `diffusers.pipelines.`."""
    return {m[len(prefix):].split(".")[0] for m in modules if m.startswith(prefix)}


def transformers_models(modules: set[str] | None = None) -> set[str]:
    """The `transformers.models.<name>` packages to bundle."""
    modules = family_component_modules() if modules is None else modules
    return _package_below(modules, "transformers.models.") | EXTRA_TRANSFORMERS_MODELS


def diffusers_pipelines(modules: set[str] | None = None) -> set[str]:
    """The `diffusers.pipelines.<name>` packages to bundle."""
    modules = family_component_modules() if modules is None else modules
    return _package_below(modules, "diffusers.pipelines.") | EXTRA_DIFFUSERS_PIPELINES


def _subpackages(package: str, sub: str) -> set[str]:
    """Names of the sub-packages (folders) of `package.sub` in the build environment."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    folder = Path(spec.origin).parent / sub  # type: ignore[union-attr, arg-type]
    return {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}


def submodule_filter(package: str, sub: str, keep: set[str]):
    """A `collect_submodules` filter: keep `package.sub.<x>` only for x in `keep` (modules always)."""
    packages = _subpackages(package, sub)
    prefix = f"{package}.{sub}."

    def accept(name: str) -> bool:
        parts = name.split(".")
        if SKIP_SUBMODULE_PARTS.intersection(parts[1:]):
            return False
        if name.startswith(prefix):
            child = name[len(prefix):].split(".")[0]
            return child not in packages or child in keep
        return True

    return accept


def hidden_imports() -> list[str]:
    """Every module imported by name at run time, so the frozen app finds it."""
    from PyInstaller.utils.hooks import collect_submodules

    modules = family_component_modules()
    found = collect_submodules("sliderstudio")
    found += collect_submodules("diffusers", filter=submodule_filter("diffusers", "pipelines",
                                                                      diffusers_pipelines(modules)))
    found += collect_submodules("transformers", filter=submodule_filter("transformers", "models",
                                                                         transformers_models(modules)))
    for package in ("peft", "lycoris", "accelerate", "huggingface_hub", "safetensors"):
        found += collect_submodules(package, filter=lambda n: not SKIP_SUBMODULE_PARTS.intersection(n.split(".")[1:]))
    found += collect_submodules("pip")  # `runtime install` runs pip; its commands load by name
    # optimizers chosen by SimpleTuner's names are imported by name (config/optimizers.py)
    found += ["prodigyopt", "prodigyopt.prodigy", "lion_pytorch", "lion_pytorch.lion_pytorch"]
    found += [_sysconfigdata_module()]
    return sorted(set(found))


def _sysconfigdata_module() -> str:
    """pip (run by `sliderstudio runtime install`) reads sysconfig, which imports this by name."""
    import sysconfig

    getter = getattr(sysconfig, "_get_sysconfigdata_name", None)
    return getter() if getter else "sysconfig"


def require_cpu_torch() -> str:
    """The build environment's torch must be a CPU build: a CUDA one adds gigabytes to the bundle.

    GPU users get CUDA through `sliderstudio runtime install` instead (sliderstudio/runtime.py).
    """
    from importlib.metadata import PackageNotFoundError, distributions, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        raise SystemExit("error: torch is not installed in the build environment") from None
    cuda_dists = sorted({d.metadata["Name"] for d in distributions()
                         if (d.metadata["Name"] or "").lower().startswith("nvidia-")})
    if "+cu" in torch_version or "+rocm" in torch_version or cuda_dists:
        raise SystemExit(f"error: the build environment has a GPU build of torch ({torch_version}"
                         f"{', ' + ', '.join(cuda_dists) if cuda_dists else ''}); install the CPU build "
                         "(pip install torch --index-url https://download.pytorch.org/whl/cpu)")
    return torch_version


def toy_model_dir() -> Path:
    """The toy model to bundle: the package's own, or a stand-in named by SLIDERSTUDIO_TOY_MODEL."""
    override = os.environ.get(TOY_MODEL_ENV)
    folder = Path(override) if override else ROOT / "resources" / "toy-model"
    if not (folder / "model_index.json").is_file():
        raise SystemExit(f"error: no toy model at {folder} (model_index.json missing). The bundle must "
                         f"carry it so the demo works offline; set {TOY_MODEL_ENV} to a diffusers folder "
                         "to build with a stand-in.")
    return folder


def _tree(source: Path, dest: str) -> list[tuple[str, str]]:
    """(file, destination folder) pairs for every file below `source`, skipping caches."""
    pairs = []
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            rel = path.parent.relative_to(source)
            pairs.append((str(path), str(Path(dest) / rel)))
    return pairs


def shipped_datas() -> list[tuple[str, str]]:
    """Slider Studio's own data: presets/, resources/ (the toy model possibly a stand-in), config_data/.

    The two resource packages keep their `__init__.py` (as a data file): the frozen app then imports
    `sliderstudio.presets` / `sliderstudio.resources` from the bundle folder like a wheel install does.
    """
    found: list[tuple[str, str]] = []
    for source, dest in SHIPPED_FOLDERS.items():
        folder = ROOT / source
        for child in sorted(folder.iterdir()):
            if child.name == "toy-model" or child.name == "__pycache__":
                continue
            found += _tree(child, f"{dest}/{child.name}") if child.is_dir() else [(str(child), dest)]
    return found + _tree(toy_model_dir(), TOY_MODEL_DEST)


def face_detector_datas() -> list[tuple[str, str]]:
    """The one OpenCV cascade `crop_style: face` loads (engine/face_crops.py reads it from
    `cv2.data.haarcascades`): PyInstaller's cv2 hook bundles the library but none of its data files,
    so without this a bundled app refused face crops with a "pip install" hint its user cannot follow."""
    from PyInstaller.utils.hooks import collect_data_files

    return collect_data_files("cv2", includes=["data/haarcascade_frontalface_default.xml"])


def datas() -> list[tuple[str, str]]:
    """Package data (presets, resources, toy model), library data files and dist metadata."""
    from PyInstaller.utils.hooks import collect_data_files, copy_metadata

    found = shipped_datas()
    for package_name in ("diffusers", "lycoris", "pip", "certifi"):
        found += collect_data_files(package_name, excludes=["**/*.py", "**/tests/**"])
    found += face_detector_datas()
    for dist in METADATA:
        try:
            found += copy_metadata(dist)
        except Exception:  # an optional distribution absent from this build environment
            pass
    found += copy_metadata("sliderstudio")
    return found


#: Folders of the torch / PySide6 wheels that only builds and tests use (C++ test programs, headers,
#: CMake files, Qt translations and QML), matched against a file's place in the bundle.
DROP_DIRS = ("torch/test/", "torch/include/", "torch/share/cmake", "PySide6/include", "PySide6/Qt/translations",
             "PySide6/Qt/qml", "PySide6/typesystems", "PySide6/glue", "/tests/")
DROP_SUFFIXES = (".h", ".hpp", ".cuh", ".pyi", ".cmake")
#: torch/bin holds test programs and protoc; only the shared-memory manager is used at run time.
TORCH_BIN_KEEP = ("torch_shm_manager",)
CUDA_LIBS = ("libcudnn", "libcublas", "libnccl", "libcusparse", "libcufft", "libcurand", "libcusolver",
             "libnvrtc", "libcudart", "libnvJitLink", "libtriton")


def _dropped(dest: str) -> bool:
    dest = "/" + dest.replace("\\", "/")
    name = dest.rsplit("/", 1)[-1]
    if "/torch/bin/" in dest:
        return name not in TORCH_BIN_KEEP
    return (any(d in dest for d in DROP_DIRS) or dest.endswith(DROP_SUFFIXES)
            or name.startswith(TORCH_TEST_LIBS) or name.startswith(CUDA_LIBS))


def strip_binaries(binaries: list) -> list:
    """Drop torch's test programs and libraries, and any CUDA library a CUDA torch build would add.

    Entries are PyInstaller TOC tuples: (destination path, source path, type).
    """
    return [entry for entry in binaries if not _dropped(str(entry[0]))]


def strip_datas(entries: list) -> list:
    """Drop headers, CMake files, type stubs, test programs and Qt's translations from collected data."""
    return [entry for entry in entries if not _dropped(str(entry[0]))]


def app_version() -> str:
    """The version from sliderstudio/__init__.py, read as text (the build may not import the package)."""
    import re

    text = (ROOT / "sliderstudio" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M)
    if not match:
        raise SystemExit("error: no __version__ in sliderstudio/__init__.py")
    return match.group(1)
