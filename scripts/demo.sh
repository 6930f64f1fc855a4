#!/usr/bin/env bash
# The main job on the embedded default: simulated clusters, embedded Redis if none is configured.
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec kpromote demo "$@"
