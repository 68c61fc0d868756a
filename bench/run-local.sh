#!/usr/bin/env bash
# Benchmarks a local three-node Riffle cluster alone: `bench/compare` with only Riffle's native
# gRPC path and without touching docs/bench.md. Same workloads, reports and table as the full
# comparison (bench/results/<UTC stamp>/); extra arguments go to bench/compare, e.g. --quick.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/compare" --systems riffle --no-doc "$@"
