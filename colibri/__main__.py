"""`python -m colibri` runs the CLI."""

from colibri.cli.app import main

main()
