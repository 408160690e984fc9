"""The package: what ``python -m build`` makes of the repository, and the tutorial that
documents it (docs/notifier.md shows the files of tests/livecounter, byte for byte)."""

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser

from django.test import SimpleTestCase

import notifier
from notifier.compat import redis_py
from tests.support.package import PROJECT, ROOT, build_wheel

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOC = ROOT / "docs" / "notifier.md"


class WheelTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.wheel = build_wheel()
        with zipfile.ZipFile(cls.wheel) as archive:
            cls.names = archive.namelist()
            meta = next(n for n in cls.names if n.endswith(".dist-info/METADATA"))
            cls.metadata = Parser().parsestr(archive.read(meta).decode())

    def test_only_the_notifier_app_is_installed(self):
        tops = {name.split("/")[0] for name in self.names}
        self.assertEqual(tops, {"notifier", "django_channels_backplane-1.0.0.dist-info"})
        for module in ("notifier/__init__.py", "notifier/consumers.py", "notifier/testing.py",
                       "notifier/compat/redis_py.py", "notifier/backends/redis.py",
                       "notifier/management/commands/run_backplane_listener.py"):
            self.assertIn(module, self.names)

    def test_metadata_declares_the_floors_the_matrix_runs(self):
        requires = sorted(self.metadata.get_all("Requires-Dist"))
        self.assertIn("Django>=4.2", requires)
        self.assertIn("channels>=4.0", requires)
        self.assertIn("asgiref>=3.6", requires)
        self.assertIn(f"redis>={redis_py.FLOOR_TEXT}", requires)
        self.assertIn('hiredis>=3.0; extra == "hiredis"', requires)
        self.assertIn('prometheus-client>=0.17; extra == "prometheus"', requires)
        self.assertEqual(self.metadata["Name"], "django-channels-backplane")
        self.assertEqual(self.metadata["License-Expression"], "MIT")
        self.assertEqual(self.metadata["Requires-Python"], ">=3.11")

    def test_version_is_the_one_in_pyproject(self):
        self.assertEqual(notifier.__version__, PYPROJECT["project"]["version"])
        self.assertEqual(self.metadata["Version"], notifier.__version__)

    def test_the_sdist_carries_the_license_and_the_guide(self):
        sdist = next(self.wheel.parent.glob("*.tar.gz"))
        with tarfile.open(sdist) as archive:
            names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
        self.assertTrue({"LICENSE", "docs/notifier.md", "pyproject.toml"} <= names, names)
        self.assertFalse({n for n in names if n.startswith(("webchat/", "bench/"))})

    def test_importing_notifier_loads_no_django(self):
        code = "import sys, notifier; print(sorted(m for m in sys.modules if 'django' in m))"
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        self.assertEqual(out.strip(), "[]")


# ```python title="counters/models.py"  ...  ```
_BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.S | re.M)


class TutorialTests(SimpleTestCase):
    def test_the_guide_shows_the_project_as_it_is(self):
        blocks = dict(_BLOCK.findall(DOC.read_text()))
        files = {
            str(path.relative_to(PROJECT)) for path in PROJECT.rglob("*.py")
            if path.name not in {"__init__.py", "manage.py"} and "migrations" not in path.parts
        }
        self.assertEqual(set(blocks), files)
        for name, text in blocks.items():
            with self.subTest(file=name):
                self.assertEqual(text, (PROJECT / name).read_text())
