"""``python -m tunewise`` runs the command line."""

from tunewise.cli import run

run()
