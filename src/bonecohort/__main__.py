"""``python -m bonecohort``: the command line (cli.py)."""

from .cli import main

main()
