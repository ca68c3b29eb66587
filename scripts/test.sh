#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up (Docker, images), then pytest.
# Docker tests are not optional: under CI=true a missing daemon fails them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh dev
python -m pytest "$@"
