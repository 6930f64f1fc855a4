"""The backup worker: consumes the `backup` queue; see tasks.py."""
