"""The kernel: errors, events and their wire, atomic file IO, crash logs, locks, the user-data folder.

Imports nothing else from the package: every other layer may use it.
"""
