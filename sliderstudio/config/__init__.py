"""The config layer: the typed train config (SimpleTuner's key names), the LyCORIS spec, the prompt
library, text pairs and the catalogues of names (optimizers, schedules, attention kernels).

It knows no model family and no engine: both faces validate through it and give the same messages.
"""
