"""The whole-system chaos suite: `python -m tests.chaos` (see driver.py)."""
