"""What sliding renewal costs a request: minting the ``_directline.renewed_token`` a post
carries, against reading a token (what every token request already does).

    .venv/bin/python bench/token_renewal.py

No database: the token functions are pure (HS256 with the configured or development key).
Prints the best of 3 runs of 20,000 calls each, in microseconds per call.
"""

import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")

import django  # noqa: E402

django.setup()

from webchat import tokens  # noqa: E402
from webchat.views.auth import Caller  # noqa: E402
from webchat.views.tokens import renewal  # noqa: E402

CALLS = 20_000


def main():
    token = tokens.issue_token(1, "c" * 24, "user-1", "Ann")
    caller = Caller("1", tokens.read_token(token))
    cases = [
        ("read a token (every token request)", lambda: tokens.read_token(token)),
        ("renewal for a post (always)", lambda: renewal(caller, always=True)),
        ("renewal for a poll, fresh token (none)", lambda: renewal(caller, always=False)),
    ]
    for name, call in cases:
        best = min(timeit.repeat(call, number=CALLS, repeat=3)) / CALLS
        print(f"{name}: {best * 1e6:.1f} us")


if __name__ == "__main__":
    main()
