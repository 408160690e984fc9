"""The end-to-end tests' requirements fail loudly when missing: never a silent skip.

Checked twice: by the setup step (scripts/_clients.sh, run by ./scripts/test) and by the
tests themselves (tests/support/directlinejs.py and chromium.py), for runs that skip setup.
"""

import os
import subprocess
from pathlib import Path
from unittest import mock

from django.test import SimpleTestCase

from tests.support import chromium, directlinejs

ROOT = Path(__file__).resolve().parent.parent


def run_setup_function(name, path):
    """Run one function of scripts/_clients.sh with ``PATH`` set to ``path``."""
    script = f'set -euo pipefail; source scripts/_clients.sh; PATH="{path}"; {name}'
    return subprocess.run(
        ["/bin/bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


class SetupStepTests(SimpleTestCase):
    def test_missing_node_fails_the_setup_naming_it(self):
        result = run_setup_function("install_e2e_node_deps", "/nonexistent")
        self.assertEqual(result.returncode, 1, result)
        self.assertIn("MISSING: node (Node.js 20+)", result.stderr)

    def test_missing_npm_fails_the_bundle_install_naming_it(self):
        # The installed bundle would be kept as is: check the step on an empty checkout.
        result = subprocess.run(
            [
                "/bin/bash",
                "-c",
                'set -euo pipefail; source scripts/_clients.sh; WEBCHAT_UI_DEST="$1"; '
                "PATH=/nonexistent; install_webchat_bundle",
                "bash",
                "/nonexistent/webchat.js",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 1, result)
        self.assertIn("MISSING: npm", result.stderr)
        self.assertIn("botframework-webchat@4.18.1", result.stderr)


class TestSideTests(SimpleTestCase):
    def test_no_node_on_the_path_is_an_assertion_not_a_skip(self):
        missing = self.assertRaisesMessage(directlinejs.NodeMissing, "node is missing")
        with mock.patch.dict(os.environ, {"PATH": "/nonexistent"}), missing:
            directlinejs.require_node()

    def test_missing_npm_package_is_named(self):
        missing = self.assertRaisesMessage(
            directlinejs.NodeMissing, "botframework-directlinejs@0.15.8 is not installed"
        )
        with mock.patch.object(directlinejs, "E2E_DIR", ROOT / "nonexistent"), missing:
            directlinejs.require_node()

    def test_no_chromium_is_an_error_naming_the_package(self):
        missing = self.assertRaisesMessage(chromium.ChromiumError, "apt-get install -y chromium")
        with mock.patch.object(chromium, "CHROMIUM", "/nonexistent/chromium"), missing:
            chromium.require_chromium()

    def test_installed_here_as_pinned(self):
        # ./scripts/test installed them; this is what the e2e tests will run with.
        self.assertTrue(directlinejs.require_node())
        self.assertEqual(chromium.require_chromium(), chromium.CHROMIUM)
