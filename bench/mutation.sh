#!/usr/bin/env bash
# The mutation bench (#31): learning, the decoding math and the store's delete path, each
# mutated one point at a time against its tests; prints the survivors. Takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python bench/mutation.py "$@"
