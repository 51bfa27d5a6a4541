"""`python -m personae.cli` runs the command line."""

from personae.cli import main

main()
