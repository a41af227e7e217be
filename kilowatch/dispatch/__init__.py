"""The dispatch optimiser: load and PV forecasts, and the battery plan that minimises the bill."""
