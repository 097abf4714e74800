#!/usr/bin/env bash
# Lists the repository's modules (the directories go.work uses), one per line,
# and fails if a go.mod in the tree is missing from go.work, so that no
# module's tests are silently left out of scripts/test.sh and .ci/run.
#   scripts/modules.sh             directories: ., cmd/pgrotate, ...
#   scripts/modules.sh --patterns  package patterns: ./..., ./cmd/pgrotate/..., ...
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t used < <(go work edit -json | sed -n 's/^.*"DiskPath": "\(.*\)".*$/\1/p' | sed 's#^\./##; s#^$#.#')
status=0
while IFS= read -r mod; do
  dir=$(dirname "$mod")
  found=0
  for u in "${used[@]}"; do [ "$u" = "$dir" ] && found=1; done
  if [ "$found" = 0 ]; then
    echo "scripts/modules.sh: $mod is not in go.work: add it with 'go work use ./$dir'" >&2
    status=1
  fi
done < <(find . -name go.mod -not -path './.git/*' -not -path '*/testdata/*' | sed 's#^\./##')
[ "$status" = 0 ] || exit 1

for u in "${used[@]}"; do
  if [ "${1:-}" = --patterns ]; then
    if [ "$u" = . ]; then echo ./...; else echo "./$u/..."; fi
  else
    echo "$u"
  fi
done
