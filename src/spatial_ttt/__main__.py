"""`python -m spatial_ttt` runs the `spatial-ttt` command."""

from spatial_ttt.cli import main

if __name__ == "__main__":
    main()
