"""Project-wide pytest configuration; shared helpers live in tests/helpers.py."""
