"""Services both faces call above the engine: the memory planner, the training queue, the family
self-check and compatibility matrix.
"""
