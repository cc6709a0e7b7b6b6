"""`python -m colibri` runs the CLI."""

from colibri.cli import main

main()
