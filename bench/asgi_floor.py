"""The floor for ``bench/cpu_per_frame.py``: the same frames written by a bare ASGI app.

    .venv/bin/daphne -v 0 bench.asgi_floor:app          # or uvicorn / hypercorn, same app

No Django, no database, no Redis, no channel layer: what an ASGI server costs to take a
Direct Line bot API POST and to write its ActivitySet to the conversation's stream sockets.
It speaks the two URLs the harness uses, as webchat does:

* ``/v3/directline/conversations/{id}/stream``: a WebSocket; accepted and kept in the
  conversation's set until it closes (the token is not checked);
* ``POST /v3/directline/bot/conversations/{id}/activities``: the body's activity gets what
  webchat's bot API adds (``from``, ``id``, ``timestamp``, ``channelId``, ``conversation``), is
  encoded compact as ``webchat.pages.encode`` does, framed as ``webchat.pages.activity_set``
  does, and sent to every socket of the conversation from the POST's task before the
  ``{"id": ...}`` answer. So the frame bytes are the same shape and size as webchat's
  (the harness records both sizes).

Anything else answers 404. Lifespan events are acknowledged (uvicorn and hypercorn send them).
"""

import json
import re
from datetime import UTC, datetime

STREAM = re.compile(r"^/v3/directline/conversations/([^/]+)/stream$")
POST = re.compile(r"^/v3/directline/bot/conversations/([^/]+)/activities$")
BOT_ACCOUNT = {"id": "bot", "name": "Bot", "role": "bot"}

#: conversation id -> the ``send`` callables of its open sockets
sockets: dict[str, set] = {}
#: conversation id -> the last sequence number given
sequences: dict[str, int] = {}


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "http":
        await http(scope, receive, send)
    elif kind == "websocket":
        await websocket(scope, receive, send)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def websocket(scope, receive, send):
    match = STREAM.match(scope["path"])
    message = await receive()  # websocket.connect
    if match is None or message["type"] != "websocket.connect":
        await send({"type": "websocket.close", "code": 4404})
        return
    conversation = match[1]
    await send({"type": "websocket.accept"})
    members = sockets.setdefault(conversation, set())
    members.add(send)
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        members.discard(send)


async def answer(send, status, body):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


async def http(scope, receive, send):
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    match = POST.match(scope["path"])
    if match is None or scope["method"] != "POST":
        await answer(send, 404, b'{"error":"not found"}')
        return
    conversation = match[1]
    activity = json.loads(b"".join(chunks))
    sequence = sequences[conversation] = sequences.get(conversation, 0) + 1
    activity["from"] = activity.get("from") or dict(BOT_ACCOUNT)
    activity["id"] = f"{conversation}|{sequence:07d}"
    activity["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    activity["channelId"] = "directline"
    activity["conversation"] = {"id": conversation}
    part = json.dumps(activity, separators=(",", ":"))
    frame = '{"activities":[' + part + '],"watermark":"' + str(sequence) + '"}'
    for member in list(sockets.get(conversation, ())):
        await member({"type": "websocket.send", "text": frame})
    await answer(send, 200, json.dumps({"id": activity["id"]}).encode())
