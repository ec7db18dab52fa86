"""Breach notification: every customer emailed exactly once."""
