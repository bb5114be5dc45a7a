#!/bin/bash
# Run ctest in a build directory and fail if any test was skipped.
#
#   scripts/ctest-no-skip.sh BUILD_DIR [ctest arguments...]
#
# A skipped test is one that did not run (an integration module exiting 77,
# a GTEST_SKIP); ctest itself counts skips as success.  `make check` runs as
# root with every dependency installed (scripts/install-deps.sh), so there a
# skip means a test silently stopped testing: it fails the run.  Set
# ALLOW_SKIPS=1 to see the run through anyway (e.g. as a non-root developer).
set -uo pipefail
dir=$1
shift
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd "$dir" && ctest "$@") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || exit "$rc"
skipped=$(grep -E '\*\*\*Skipped|\(Skipped\)$' "$log" | sed -E 's/^ +//' | sort -u)
if [ -n "$skipped" ]; then
  echo
  echo "ctest-no-skip: these tests were skipped, not run:" >&2
  echo "$skipped" >&2
  if [ "${ALLOW_SKIPS:-0}" = 1 ]; then
    echo "ctest-no-skip: ALLOW_SKIPS=1, not failing" >&2
    exit 0
  fi
  echo "ctest-no-skip: failing (set ALLOW_SKIPS=1 to allow skips)" >&2
  exit 1
fi
exit 0
