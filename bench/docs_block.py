"""A generated block of docs/benchmarks.md: the text between a bench script's two markers."""

from pathlib import Path


def write_block(path, body, begin, end, title="# Benchmarks\n"):
    """Put ``body`` between ``begin`` and ``end`` in ``path``, leaving the rest of the file
    alone; a file without the markers gets the block at its end (a new file starts with
    ``title``)."""
    path = Path(path)
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.exists() else title
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
