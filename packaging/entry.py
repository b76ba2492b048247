"""Entry point of the frozen app (PyInstaller runs this file, not `sliderstudio.cli`).

Two jobs before the ordinary CLI: `freeze_support()` so worker processes of a frozen app start
as workers and not as a second app, and the `--runtime-pip` switch, which makes the app run pip
(the frozen app has no `python -m pip`; `sliderstudio runtime install` re-runs the app with it).
"""
from __future__ import annotations

import multiprocessing
import sys


def main() -> int:
    multiprocessing.freeze_support()
    from sliderstudio.runtime import PIP_FLAG, run_pip

    if sys.argv[1:2] == [PIP_FLAG]:
        return run_pip(sys.argv[2:])
    from sliderstudio.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
