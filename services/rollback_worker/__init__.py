"""The rollback worker: consumes the `rollback` queue; see tasks.py."""
