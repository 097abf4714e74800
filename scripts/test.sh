#!/usr/bin/env bash
# The project's test command: the whole suite of every module in go.work
# (the root module, cmd/pgrotate, and each store that has a module of its
# own), in one `go test` run, real PostgreSQL included. Extra arguments go to
# go test, e.g. scripts/test.sh -count=1, or scripts/test.sh -run Vault.
set -euo pipefail
cd "$(dirname "$0")/.."

list=$(scripts/modules.sh --patterns)
mapfile -t patterns <<<"$list"
exec go test -race -timeout 20m "$@" "${patterns[@]}"
