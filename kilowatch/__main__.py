"""Run the ``kilowatch`` command as ``python -m kilowatch``."""

from kilowatch.cli import main

main()
