"""What the `kpromote` commands people type do: plan, apply, rollback, status and backups.

`services/cli.py` only parses options; each command hands over to the module of the same name here, which
returns the exit code. Expected failures are `ConsoleError`s carrying one sentence and an exit code
(`services.console.common`), so nobody reading a terminal has to read a traceback.
"""
