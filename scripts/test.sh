#!/usr/bin/env bash
# The whole test suite: lint, types (mypy over shared, services and kubesim), then every test (Redis: KPROMOTE_BROKER_URL, else 127.0.0.1:6379, else embedded).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
ruff check .
ruff format --check .
mypy
exec python -m pytest "$@"
