"""`python -m heron ...` runs the `heron` command, so torchrun can launch it: `torchrun --nproc-per-node N -m heron train DATA`."""

import sys

from heron.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports this as its main module
    sys.exit(main())
