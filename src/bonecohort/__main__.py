"""``python -m bonecohort``: the command line (cli.py)."""

from bonecohort.shell.cli import main

main()
