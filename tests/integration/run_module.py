#!/usr/bin/env python3
"""Run one integration test module and report a skip to ctest as a skip.

`python3 -m unittest` exits 0 when tests were skipped, so ctest would show a
module that never ran as Passed.  This runner exits:
  0   every test ran and passed
  1   a test failed or errored (or the module did not load)
  77  nothing failed but at least one test was skipped (ctest's
      SKIP_RETURN_CODE for the integration tests), after printing each
      skipped test and its reason.
`make check` then fails on any skipped test (see scripts/ctest-no-skip.sh).
"""
import os
import sys
import unittest

SKIPPED = 77


def main(argv):
    if len(argv) != 2:
        print("usage: run_module.py MODULE", file=sys.stderr)
        return 2
    sys.path.insert(0, os.getcwd())  # as `python3 -m unittest` does
    suite = unittest.defaultTestLoader.loadTestsFromName(argv[1])
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    if result.skipped:
        for test, reason in result.skipped:
            print(f"SKIPPED {test.id()}: {reason}", file=sys.stderr)
        return SKIPPED
    if result.testsRun == 0:
        print(f"no tests in {argv[1]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
