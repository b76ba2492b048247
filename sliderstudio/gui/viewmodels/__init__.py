"""View-models: QObjects with change signals between the widgets and the Qt-free core.

Widgets read and write through these; they never touch the engine (`sliderstudio.engine`) directly, and the
rules (role/strength consistency, preset mapping, what a drop accepts) live here or in core.
"""
