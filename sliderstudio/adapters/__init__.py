"""Slider adapters: PEFT LoRA and LyCORIS with a signed strength, their files, target matching and
the ControlNet wrapper. Family traits are passed in; adapters know no engine.
"""
