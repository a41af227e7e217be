"""Components of the schedule editor and its history and preview."""
