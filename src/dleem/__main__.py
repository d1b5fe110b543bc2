"""`python -m dleem` (and `torchrun -m dleem train ...`) runs the command-line interface."""

import sys

from dleem.cli import main

sys.exit(main())
