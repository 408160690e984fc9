"""The package as a user gets it: its wheel, installed into a fresh venv per matrix cell.

::

    wheel = build_wheel()                   # python -m build, once per test process
    with cell_lock(cell):
        venv = ensure_venv(cell)            # cached by a hash of the cell's requirements
        install_package(venv, cell, wheel)  # the wheel only (--no-deps), then pip check

Venvs live under ``~/.cache/django-channels-backplane/`` (``BACKPLANE_VENV_CACHE``). A cell's
venv is made once (python -m venv + pip install of its pins) and reused while its
requirements do not change; the wheel is reinstalled on every run.
"""

import contextlib
import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "tests" / "livecounter"
CACHE = Path(os.environ.get("BACKPLANE_VENV_CACHE")
             or Path.home() / ".cache" / "django-channels-backplane")
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
PIP_TIMEOUT = 900  # seconds for one cell's first install (the shared machine is slow)

#: The ASGI servers every cell runs, pinned as requirements.txt pins them.
SERVERS = ("daphne", "uvicorn", "gunicorn", "hypercorn")


def pinned(name):
    """``name==version`` as requirements.txt pins it."""
    text = (ROOT / "requirements.txt").read_text()
    match = re.search(rf"^{re.escape(name)}(\[[^\]]*\])?==(\S+)", text, re.M | re.I)
    if match is None:
        raise AssertionError(f"requirements.txt does not pin {name}")
    return f"{name}=={match.group(2)}"


@dataclass(frozen=True)
class Cell:
    """One combination of the compatibility matrix."""

    name: str
    python: str  # "3.11"
    pins: tuple  # the dependencies under test, "Django==4.2.30", ...
    #: False, True (requirements.txt's pin) or a version ("3.0.0").
    hiredis: object = False
    #: Install with ``pip install <repository root>`` (as a user of a checkout does)
    #: instead of the wheel.
    from_source: bool = False

    def requirements(self):
        if isinstance(self.hiredis, str):
            extra = [f"hiredis=={self.hiredis}"]
        else:
            extra = [pinned("hiredis")] if self.hiredis else []
        return [*self.pins, *extra, *(pinned(server) for server in SERVERS)]

    def key(self):
        text = "\n".join([self.python, *sorted(self.requirements())])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def describe(self):
        hiredis = self.requirements()[len(self.pins)] if self.hiredis else "hiredis off"
        return f"{self.name} (Python {self.python}, {', '.join(self.pins)}, {hiredis})"

    def pin(self, name):
        """The version this cell pins ``name`` to, or None."""
        for requirement in self.requirements():
            if requirement.lower().startswith(f"{name.lower()}=="):
                return requirement.split("==", 1)[1]
        return None


def interpreter(version):
    """The path of a Python ``version`` ("3.12") interpreter; raise ``AssertionError`` naming
    it when this machine has none (a cell never skips)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    candidates = sorted(glob.glob(str(PYENV_ROOT / "versions" / f"{version}.*" / "bin" /
                                      f"python{version}")))
    found = candidates[-1] if candidates else shutil.which(f"python{version}")
    if found is None:
        raise AssertionError(
            f"Python {version} is missing: the compatibility matrix needs it (install it, e.g. "
            f"pyenv install {version}, or put python{version} on PATH)"
        )
    return found


def run(args, *, timeout=PIP_TIMEOUT, **kwargs):
    """Run ``args``; raise ``AssertionError`` with the output when it fails."""
    completed = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {completed.returncode}:\n"
                             f"{completed.stdout[-4000:]}\n{completed.stderr[-4000:]}")
    return completed.stdout


_wheel = None


def build_wheel():
    """Build the sdist and, from it, the wheel (``python -m build``) once per test process;
    return the wheel's path."""
    global _wheel
    if _wheel is None:
        out = Path(tempfile.mkdtemp(prefix="backplane-dist-"))
        run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=600)
        wheels = list(out.glob("*.whl"))
        if len(wheels) != 1:
            raise AssertionError(f"python -m build made {wheels}")
        _wheel = wheels[0]
    return _wheel


@contextlib.contextmanager
def cell_lock(cell):
    """Hold the cell's venv for this process (two test runs never share one at once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{cell.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_venv(cell):
    """The cell's venv with its requirements installed (made now if not cached)."""
    path = CACHE / f"{cell.name}-{cell.key()}"
    done = path / ".requirements-installed"
    if done.exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    python = interpreter(cell.python)
    run([python, "-m", "venv", str(path)], timeout=300)
    run([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet",
         *cell.requirements()])
    done.write_text("\n".join(cell.requirements()) + "\n")
    return path


def install_package(venv, cell, wheel):
    """Install the package into ``venv``: ``wheel`` alone (its dependencies are the cell's
    pins), or for a ``from_source`` cell ``pip install <repository root>``, which resolves
    the declared dependencies against the pins. Then ``pip check``."""
    python = str(venv / "bin" / "python")
    if cell.from_source:
        run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "django-channels-backplane"])
        run([python, "-m", "pip", "install", "--quiet", str(ROOT)])
    else:
        run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
             str(wheel)])
    run([python, "-m", "pip", "check"], timeout=120)


def project_env(**overrides):
    """The environment of the tutorial project's processes: its folder on the path, never
    the repository root (``notifier`` must come from the venv)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DJANGO_", "VIRTUAL_ENV", "PYTHON"))}
    env.update({"PYTHONPATH": str(PROJECT), "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "livecounter.settings"})
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(ROOT)))
    env.update(overrides)
    return env
