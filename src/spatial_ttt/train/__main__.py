"""``python -m spatial_ttt.train [train] CONFIG.yaml --set key=value`` (for torchrun / accelerate launch)."""

import sys

from .cli import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "train":
        sys.argv.insert(1, "train")
    main()
