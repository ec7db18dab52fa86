"""Breach notification: every customer emailed exactly once (issue 8)."""
