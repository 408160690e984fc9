"""The wire v1 test vectors, shared with the Rust service that uses the same channel.

The source of truth is ``shared/wire-v1-vectors.json`` beside the clone (CI and the
developers' machines lay it there). ``tests/data/wire-v1-vectors.json`` is a copy so that a
bare clone runs the whole suite too; ``tests.test_wire`` fails when the two differ.
"""

import json
from functools import cache
from pathlib import Path

from django.conf import settings

SHARED = Path(settings.BASE_DIR).parent / "shared" / "wire-v1-vectors.json"
COPY = Path(__file__).resolve().parent.parent / "data" / "wire-v1-vectors.json"


@cache
def vectors():
    """The vectors as a dict, from the shared file when it is there, else from the copy."""
    path = SHARED if SHARED.exists() else COPY
    return json.loads(path.read_text(encoding="utf-8"))
