"""Slider Studio: train concept sliders for diffusion models and compare strengths side by side."""

__version__ = "0.1.0"
