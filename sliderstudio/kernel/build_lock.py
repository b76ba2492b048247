"""One lock for loading models and building modules, because loading is not thread-safe.

diffusers loads weights inside accelerate's `init_empty_weights`, which patches
`nn.Module.register_parameter` for the whole process while it runs: a module built on any other
thread in that window (a LoRA layer, a VAE) silently gets meta, weightless parameters. In the app,
training and preview work on different threads, so every model load and every adapter construction
holds this lock (re-entrant: a load may build adapters).
"""
from __future__ import annotations

import threading

BUILD_LOCK = threading.RLock()
