"""Helpers shared by the drivers: errors, logging, atomic files, image pool, reports."""
