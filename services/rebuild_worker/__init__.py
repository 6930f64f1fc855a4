"""The rebuild worker: consumes the `rebuild` queue; see tasks.py."""
