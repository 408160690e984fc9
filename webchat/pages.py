"""Pages of a conversation's activities: bounded by count and by bytes, encoded once.

A poll answer, a bot API read and each read of the stream is one page: at most ``limit``
activities and ``max_bytes`` of JSON, but always at least one activity when there is one,
so paging by watermark reaches every activity. A page's watermark is its last activity's.
The stream sends a page as frames of at most ``MAX_FRAME_BYTES``; an activity too big for a
frame on its own is sent as a stub that says where to read it (:func:`oversized_stub`).

Pages are read and encoded on the database threads (the API's, the stream's), never on the
event loop, one activity at a time: a long encode holds the GIL for one activity, not for
the page.
"""

import json
from dataclasses import dataclass, field

from . import queries


def encode(activity: dict) -> str:
    """One activity's JSON: compact and ASCII (escapes keep lone surrogates sendable), so
    its length is its size in bytes."""
    return json.dumps(activity, separators=(",", ":"))


def activity_set(parts: list, watermark: int) -> str:
    """The ActivitySet ``{"activities": [...], "watermark": "N"}`` of encoded activities."""
    return '{"activities":[' + ",".join(parts) + '],"watermark":"' + str(watermark) + '"}'


#: Bytes of an ActivitySet around its activities, with the longest watermark.
SET_OVERHEAD = len(activity_set([], queries.MAX_SEQUENCE))


@dataclass(slots=True)
class Page:
    """Activities after a watermark, encoded. Shared by the stream's sockets: never mutate.

    ``more``: a later page may hold more (this one was cut by count or by bytes).
    ``frames``: the stream's frames, when read by :func:`stream_page`.
    """

    activities: list
    parts: list
    newest: int
    more: bool = False
    sequences: list = field(default_factory=list)
    frames: list = field(default_factory=list)

    def body(self) -> str:
        """The whole page as one ActivitySet (a poll answer)."""
        return activity_set(self.parts, self.newest)


def read_page(conversation_id: str, watermark: int, *, limit: int, max_bytes: int,
              upto: int | None = None) -> Page:
    """Read and encode the activities after ``watermark`` (at most ``upto``): at most
    ``limit`` of them and, the first one aside, no more than fit ``max_bytes`` as an
    ActivitySet. Called on a database thread."""
    rows = queries.activities_page(
        conversation_id, watermark, limit=limit, max_bytes=max_bytes, upto=upto
    )
    # The database cut by stored size (PostgreSQL's is shorter than the JSON sent): cut
    # again by the encoded size, which is what goes out.
    page = Page([], [], watermark, more=len(rows) == limit)
    size, stored = SET_OVERHEAD, 0
    for sequence, activity, stored_size in rows:
        part = encode(activity)
        if page.parts and size + len(part) + 1 > max_bytes:
            page.more = True
            break
        page.activities.append(activity)
        page.parts.append(part)
        page.sequences.append(sequence)
        page.newest = sequence
        size += len(part) + 1
        stored += stored_size or 0
    else:
        page.more = page.more or stored >= max_bytes
    return page


def oversized_stub(activity: dict, sequence: int, size: int, max_frame_bytes: int) -> dict:
    """What the stream sends instead of an activity whose JSON (``size`` bytes) exceeds a
    frame on its own: its envelope (id, type, sender, reply and client ids), a notice as
    ``text``, and ``channelData.oversized``. The full activity is served by polling
    (``GET .../activities?watermark=<its sequence - 1>``), whose pages always hold one."""
    stub = {key: activity[key] for key in (
        "type", "id", "timestamp", "channelId", "conversation", "from", "recipient", "replyToId"
    ) if key in activity}
    channel_data = activity.get("channelData")
    client_id = channel_data.get("clientActivityID") if isinstance(channel_data, dict) else None
    oversized = {"bytes": size, "maxFrameBytes": max_frame_bytes}
    stub["channelData"] = {"oversized": oversized}
    if isinstance(client_id, str):
        # Web Chat matches its sent message by this id: without it, "send failed".
        stub["channelData"]["clientActivityID"] = client_id
    conversation = activity.get("conversation") or {}
    stub["text"] = (
        f"This activity ({size} bytes) is too large for the stream; read it with GET "
        f"/v3/directline/conversations/{conversation.get('id')}/activities"
        f"?watermark={sequence - 1}."
    )
    if SET_OVERHEAD + len(encode(stub)) <= max_frame_bytes:
        return stub
    # Even the envelope is too big (a huge sender name, say): ids only.
    return {"type": activity.get("type"), "id": activity.get("id"),
            "timestamp": activity.get("timestamp"), "channelData": {"oversized": oversized}}


def stream_page(conversation_id: str, cursor: int, limit: int, max_bytes: int,
                max_frame_bytes: int, upto: int | None = None) -> Page:
    """A stream read: the page after ``cursor`` and its frames, each an ActivitySet of at
    most ``max_frame_bytes`` whose watermark is its last activity's. Called on the stream's
    database thread."""
    page = read_page(conversation_id, cursor, limit=limit, max_bytes=max_bytes, upto=upto)
    batch, size, last = [], SET_OVERHEAD, cursor
    for activity, part, sequence in zip(page.activities, page.parts, page.sequences,
                                        strict=True):
        if SET_OVERHEAD + len(part) > max_frame_bytes:
            part = encode(oversized_stub(activity, sequence, len(part), max_frame_bytes))
        if batch and size + len(part) + 1 > max_frame_bytes:
            page.frames.append(activity_set(batch, last))
            batch, size = [], SET_OVERHEAD
        batch.append(part)
        size += len(part) + 1
        last = sequence
    if batch:
        page.frames.append(activity_set(batch, last))
    return page
