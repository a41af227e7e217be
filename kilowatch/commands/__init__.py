"""Core subcommands of ``kilowatch``; each module adds its commands to ``cli.main``."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
