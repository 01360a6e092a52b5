"""Shared test helpers. The package is installed (editable); run pytest from the repository root."""
