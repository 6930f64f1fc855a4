"""The detach worker: consumes the `detach` queue; see tasks.py."""
