"""Components of the alarm pages and the navbar's alarm badge."""
