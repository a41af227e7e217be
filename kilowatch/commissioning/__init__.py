"""Commissioning: the per-site checklist and the commissioning reports."""
