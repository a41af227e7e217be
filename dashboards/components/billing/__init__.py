"""Components of the tariff editor and the savings pages."""
