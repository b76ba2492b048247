"""Command line front door (placeholder until the engine lands in this module)."""
import sys

from sliderstudio import __version__


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--version":
        print(f"sliderstudio {__version__}")
        return 0
    return 1
