"""The bundled toy world: procedurally drawn shapes and a tiny diffusion model trained on them.

The model ships inside the package so the demo, the app's demo project and the tests work with
no download. `"sliderstudio:toy"` in a config's `pretrained_model_name_or_path` names it; its
folder is `sliderstudio.core.resources.toy_model_dir()` (the repository's `resources/toy-model/`).
"""

#: The config value that names the bundled model.
TOY_MODEL_ID = "sliderstudio:toy"
