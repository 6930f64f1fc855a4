"""`python -m services` is `kpromote`, for environments where the console script is not on PATH."""

from services.cli import main

main()
