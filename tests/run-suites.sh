#!/bin/sh
# Runs every cmocka suite given on the command line, each to the end, and
# prints one closing line; exits non-zero when any suite failed.
failed=0; passed=0; bad=""
for t in "$@"; do
    echo "== $t"
    if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); bad="$bad $t"; fi
done
echo
[ -n "$bad" ] && echo "failed suites:$bad"
echo "suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
