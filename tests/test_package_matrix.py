"""The compatibility matrix: the wheel in a fresh venv per cell, the tutorial's project served
by real servers on real Redis, every bump to every socket.

A covering set of Django 4.2/5.2/6.1 x channels 4.0/4.3 x redis-py 5.0/5.3/6/7/8 x hiredis
on/off: every value at least once, the oldest together and the newest together, and
redis-py 8.1 (the repository's pin). Each cell:

1. installs the wheel (``python -m build``) into the cell's venv (cached by requirements);
   the redis-py 8.1 cell runs ``pip install <repository root>`` instead;
2. runs the project's own tests (``manage.py test counters``: the memory backend and Redis,
   through ``notifier.testing``), and where the cell installs prometheus-client (the
   ``[prometheus]`` extra), one scrape of ``notifier.metrics.NotifierCollector``;
3. serves the project with ``gunicorn --preload`` (two uvicorn workers), uvicorn, daphne and
   hypercorn at once (the newest cell adds ``uvicorn --workers 2``), opens sockets on each
   (on both workers of each), and checks that each of 5 bumps, posted through each server
   in turn, reaches every socket.

A redis-py below the floor refuses to start (uvicorn exits naming the version).
Cell times are printed (``matrix cell ...: N s``); docs/notifier.md has them.
"""

import asyncio
import sys
import time

from django.test import SimpleTestCase

from tests.support.livecounter import LiveCounterSite
from tests.support.package import (
    Cell,
    build_wheel,
    cell_lock,
    ensure_venv,
    install_package,
    pinned,
)
from tests.support.redis_server import SHARED_URL, requires_shared_redis

# The oldest cell pins the floors pyproject.toml declares, extras included.
OLDEST = Cell("oldest", "3.11", ("Django==4.2", "channels==4.0.0", "redis==5.0.1",
                                 "asgiref==3.6.0", "prometheus-client==0.17.0"), hiredis=False)
NEWEST = Cell("newest", "3.13", ("Django==6.1.3", "channels==4.3.2", "redis==8.2.0",
                                 pinned("prometheus-client")), hiredis=True)
MATRIX = (
    OLDEST,
    Cell("django42-redis53", "3.11", ("Django==4.2.30", "channels==4.3.2", "redis==5.3.1"),
         hiredis="3.0.0"),
    Cell("django52-redis6", "3.12", ("Django==5.2.19", "channels==4.0.0", "redis==6.4.0"),
         hiredis=False),
    Cell("django52-redis7", "3.11", ("Django==5.2.19", "channels==4.3.2", "redis==7.4.1"),
         hiredis=True),
    Cell("django52-redis81", "3.11", ("Django==5.2.19", "channels==4.3.2", "redis==8.1.0"),
         hiredis=False, from_source=True),
    NEWEST,
)
#: Below the floor: must refuse to start.
TOO_OLD = Cell("redis46", "3.11", ("Django==4.2.30", "channels==4.0.0", "redis==4.6.0"))

SERVERS = ("gunicorn-preload", "uvicorn", "daphne", "hypercorn")
#: More servers for some cells: uvicorn's own workers (spawned, not forked).
EXTRA_SERVERS = {"newest": ("uvicorn-workers",)}
#: Distinct worker processes that must hold sockets, by server.
WORKERS = {"gunicorn-preload": 2, "uvicorn-workers": 2}


def report(line):
    sys.stderr.write(f"\n{line}\n")


@requires_shared_redis
class CompatibilityMatrixTests(SimpleTestCase):
    def run_cell(self, cell):
        started = time.monotonic()
        wheel = build_wheel()
        with cell_lock(cell):
            venv = ensure_venv(cell)
            installed = time.monotonic()
            install_package(venv, cell, wheel)
            site = LiveCounterSite(self, venv, SHARED_URL)
            code, where = site.python("-c", "import notifier; print(notifier.__file__)")
            self.assertEqual(code, 0, where)
            self.assertTrue(where.strip().startswith(str(venv)), where)
            site.migrate()
            site.manage("test", "--noinput", "counters", timeout=300)
            if cell.pin("prometheus-client"):
                self.assertIn("webchat_notifier_published_total", site.scrape_metrics())
            site.start(*SERVERS, *EXTRA_SERVERS.get(cell.name, ()))
            pids = asyncio.run(site.every_bump_reaches_every_socket(
                "c1", bumps=5, pids_per_server=WORKERS))
            site.stop()
        for kind, workers in WORKERS.items():
            if kind in pids:
                self.assertEqual(len(pids[kind]), workers, pids)
        report(f"matrix cell {cell.describe()}: {time.monotonic() - started:.1f} s "
               f"({installed - started:.1f} s venv)")

    def test_oldest(self):
        self.run_cell(OLDEST)

    def test_django42_redis53_hiredis(self):
        self.run_cell(MATRIX[1])

    def test_django52_channels40_redis6(self):
        self.run_cell(MATRIX[2])

    def test_django52_redis7_hiredis(self):
        self.run_cell(MATRIX[3])

    def test_django52_redis81(self):
        self.run_cell(MATRIX[4])

    def test_newest(self):
        self.run_cell(NEWEST)

    def test_the_matrix_covers_every_value(self):
        wanted = {"Django": {"4.2", "5.2", "6.1"}, "channels": {"4.0", "4.3"},
                  "redis": {"5.0", "5.3", "6", "7", "8"}}
        seen = {name: set() for name in wanted}
        for cell in MATRIX:
            for pin in cell.pins:
                name, version = pin.split("==")
                parts = version.split(".")
                if name in seen:
                    wide = name != "redis" or parts[0] == "5"
                    seen[name].add(".".join(parts[:2]) if wide else parts[0])
        self.assertEqual(seen, wanted)
        self.assertEqual({bool(cell.hiredis) for cell in MATRIX}, {True, False})

    def test_redis_py_below_the_floor_refuses_to_start(self):
        wheel = build_wheel()
        with cell_lock(TOO_OLD):
            venv = ensure_venv(TOO_OLD)
            install_wheel_without_check(venv, wheel)
            site = LiveCounterSite(self, venv, SHARED_URL)
            server = site.spawn("uvicorn")
            code = server.process.wait(60)
        self.assertNotEqual(code, 0, server.log())
        self.assertIn("4.6.0", server.log())
        self.assertIn("notifier.E020", server.log())


def install_wheel_without_check(venv, wheel):
    """The wheel without its dependencies and without ``pip check``, which would refuse the
    too old redis-py before the package can."""
    from tests.support.package import run

    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
         "--force-reinstall", str(wheel)])
