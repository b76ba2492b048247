"""`python -m sliderstudio` is the `sliderstudio` command (the app starts its training process this way)."""
import sys

from sliderstudio.cli import main

sys.exit(main())
