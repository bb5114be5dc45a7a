"""The test plumbing itself: a skipped test shows as skipped, and make check
fails on it (issue 12 item 14).

run_module.py is what ctest runs for every integration module; ctest-no-skip.sh
is what `make check` wraps ctest in.  Both are driven here on throw-away
modules and a throw-away CMake project, so a regression in either shows as a
failure, not as a suite that quietly passes without running."""
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

from harness import which

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "run_module.py")
NO_SKIP = os.path.join(HERE, "..", "..", "scripts", "ctest-no-skip.sh")

MODULES = {
    "mod_pass": """
        import unittest
        class T(unittest.TestCase):
            def test_a(self): self.assertEqual(1 + 1, 2)
    """,
    "mod_skip": """
        import unittest
        class T(unittest.TestCase):
            def test_a(self): self.assertTrue(True)
            def test_b(self): raise unittest.SkipTest("needs a thing")
    """,
    "mod_fail": """
        import unittest
        class T(unittest.TestCase):
            def test_a(self): self.assertEqual(1, 2)
            def test_b(self): raise unittest.SkipTest("needs a thing")
    """,
    "mod_empty": """
        import unittest
    """,
}


class RunModuleTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mailauth-runner-")
        for name, body in MODULES.items():
            with open(os.path.join(self.dir.name, name + ".py"), "w") as f:
                f.write(textwrap.dedent(body))

    def tearDown(self):
        self.dir.cleanup()

    def run_module(self, name):
        return subprocess.run([sys.executable, RUNNER, name], cwd=self.dir.name,
                              capture_output=True, text=True, timeout=60)

    def test_exit_codes(self):
        self.assertEqual(self.run_module("mod_pass").returncode, 0)
        r = self.run_module("mod_skip")
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("SKIPPED mod_skip.T.test_b: needs a thing", r.stderr)
        self.assertEqual(self.run_module("mod_fail").returncode, 1)
        # A module with no tests has tested nothing: not a pass.
        self.assertEqual(self.run_module("mod_empty").returncode, 1)


class CtestNoSkipTest(unittest.TestCase):
    """A CMake project with one passing and one skipping test, run through
    the wrapper make check uses."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="mailauth-ctest-")
        src = os.path.join(self.dir.name, "src")
        os.mkdir(src)
        with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
            f.write(textwrap.dedent("""
                cmake_minimum_required(VERSION 3.16)
                project(t LANGUAGES NONE)
                enable_testing()
                add_test(NAME ok COMMAND true)
                add_test(NAME skips COMMAND sh -c "exit 77")
                set_tests_properties(skips PROPERTIES SKIP_RETURN_CODE 77)
                add_test(NAME ok2 COMMAND true)
            """))
        self.build = os.path.join(self.dir.name, "build")
        subprocess.run([which("cmake"), "-S", src, "-B", self.build], check=True,
                       capture_output=True, timeout=120)

    def tearDown(self):
        self.dir.cleanup()

    def wrapper(self, *args, env=None):
        return subprocess.run(["bash", NO_SKIP, self.build, *args], capture_output=True,
                              text=True, timeout=120, env=dict(os.environ, **(env or {})))

    def test_a_skip_fails_the_run(self):
        r = self.wrapper(env={"ALLOW_SKIPS": "0"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("skips", r.stderr)
        self.assertNotIn("ok2", r.stderr)

    def test_without_skips_it_passes(self):
        self.assertEqual(self.wrapper("-E", "skips", env={"ALLOW_SKIPS": "0"}).returncode, 0)

    def test_allow_skips(self):
        r = self.wrapper(env={"ALLOW_SKIPS": "1"})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("skips", r.stderr)


if __name__ == "__main__":
    unittest.main()
