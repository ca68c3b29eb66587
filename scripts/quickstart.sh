#!/usr/bin/env bash
# The quickstart on a fresh machine: set up, then run the penguin pipeline with
# every step in the image of its integration (local Docker, local artifact
# store, SQLite metadata in ./.zenml).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh core
zenml pipeline run examples/quickstart/pipeline.py "$@"
