"""The bundled toy world: procedurally drawn shapes and a tiny diffusion model trained on them.

The model ships inside the package so the demo, the app's demo project and the tests work with
no download. `"sliderstudio:toy"` in a config's `pretrained_model_name_or_path` names it.

Importing the package registers the toy world's attribute meter (`toy.metrics`) for the toy model,
so calibration and reports measure its sliders by shape area, brightness and hue: the engine asks
`engine.attribute_meters.meter_for` and never imports the toy.
"""

from pathlib import Path

#: The config value that names the bundled model.
TOY_MODEL_ID = "sliderstudio:toy"


def toy_model_path() -> Path:
    """Folder of the bundled StableDiffusionPipeline (package-relative, works when installed)."""
    return Path(__file__).resolve().parent.parent / "resources" / "toy-model"


def is_toy(model: str) -> bool:
    """The bundled toy model, by its config name or its folder: then the toy attribute meter applies."""
    if str(model).strip() == TOY_MODEL_ID:
        return True
    try:
        return Path(model).resolve() == toy_model_path().resolve()
    except (OSError, ValueError):
        return False


def _register_meter() -> None:
    from sliderstudio.engine.attribute_meters import register_meter
    from sliderstudio.toy.metrics import TOY_METER

    register_meter(is_toy, TOY_METER)


_register_meter()
