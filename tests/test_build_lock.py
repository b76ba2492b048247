"""Loading a model and building modules never overlap across threads (diffusers' loading is not thread-safe)."""
import threading

import torch

from sliderstudio.adapters.adapters import attach_lora
from sliderstudio.kernel.build_lock import BUILD_LOCK
from sliderstudio.families.loading import load_pipeline
from sliderstudio.families.registry import get_family


def test_a_module_built_during_a_load_on_another_thread_is_not_on_meta(tiny_models, monkeypatch):
    """While one thread loads (accelerate patches register_parameter process-wide), another attaches a
    LoRA; without the lock the LoRA's weights land on the meta device."""
    family = get_family("sd1x")
    cls = family.pipeline_class
    original = cls.from_pretrained.__func__
    built: dict[str, object] = {}

    model = torch.nn.Sequential(torch.nn.Linear(4, 4))  # already loaded, as the training model is

    def attach_elsewhere() -> None:
        attach_lora(model, ["0"], 2, 2)
        built["devices"] = {p.device.type for n, p in model.named_parameters() if "lora_" in n}

    def slow_load(klass, *args, **kwargs):
        from accelerate import init_empty_weights

        worker = threading.Thread(target=attach_elsewhere)
        with init_empty_weights():           # what diffusers does while it loads weights
            worker.start()
            worker.join(timeout=0.3)         # the other thread must wait for the lock, not build now
            built["waited"] = worker.is_alive()
        pipe = original(klass, *args, **kwargs)
        built["thread"] = worker
        return pipe

    monkeypatch.setattr(cls, "from_pretrained", classmethod(slow_load))
    load_pipeline(family, str(tiny_models["sd1x"]))
    built["thread"].join(timeout=10)
    assert built["waited"] is True
    assert built["devices"] == {"cpu"}


def test_the_lock_is_reentrant():
    with BUILD_LOCK:
        with BUILD_LOCK:
            acquired = BUILD_LOCK.acquire(timeout=0.1)
            assert acquired
            BUILD_LOCK.release()
