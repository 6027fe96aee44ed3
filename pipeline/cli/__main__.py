"""`python -m pipeline.cli` runs the framewire command line."""

from pipeline.cli import main

main()
