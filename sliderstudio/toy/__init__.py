"""The bundled toy world: procedurally drawn shapes and a tiny diffusion model trained on them.

The model ships inside the package so the demo, the app's demo project and the tests work with
no download. `"sliderstudio:toy"` in a config's `pretrained_model_name_or_path` names it; its
folder is `sliderstudio.kernel.resources.toy_model_dir()` (the repository's `resources/toy-model/`).

Importing the package registers the toy world's attribute meter (`toy.metrics`) for the toy model,
so calibration and reports measure its sliders by shape area, brightness and hue: the engine asks
`engine.attribute_meters.meter_for` and never imports the toy.
"""

from pathlib import Path

#: The config value that names the bundled model.
TOY_MODEL_ID = "sliderstudio:toy"


def is_toy(model: str) -> bool:
    """The bundled toy model, by its config name or its folder: then the toy attribute meter applies."""
    from sliderstudio.kernel.resources import toy_model_dir

    if str(model).strip() == TOY_MODEL_ID:
        return True
    try:
        return Path(model).resolve() == toy_model_dir().resolve()
    except (OSError, ValueError):
        return False


def _register_meter() -> None:
    from sliderstudio.engine.attribute_meters import register_meter
    from sliderstudio.toy.metrics import TOY_METER

    register_meter(is_toy, TOY_METER)


_register_meter()
