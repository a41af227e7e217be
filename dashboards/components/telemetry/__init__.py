"""Charts, live values, tiles and the fleet table."""
