"""Ordered SQL migrations (`NNNN_name.sql`) and the runner that applies them."""
