"""Makes the repo root importable for pytest even without an editable install."""
