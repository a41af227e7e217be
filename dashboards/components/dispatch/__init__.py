"""Figures and cards of the dispatch optimiser: a plan against what happened, forecast accuracy."""
