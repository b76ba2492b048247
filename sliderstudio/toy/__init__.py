"""The bundled toy world: procedurally drawn shapes and a tiny diffusion model trained on them.

The model ships inside the package so the demo, the app's demo project and the tests work with
no download. `"sliderstudio:toy"` in a config's `pretrained_model_name_or_path` names it.
"""

from pathlib import Path

#: The config value that names the bundled model.
TOY_MODEL_ID = "sliderstudio:toy"


def toy_model_path() -> Path:
    """Folder of the bundled StableDiffusionPipeline (package-relative, works when installed)."""
    return Path(__file__).resolve().parent.parent / "resources" / "toy-model"
