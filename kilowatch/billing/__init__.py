"""Tariffs, utility bills and savings."""
