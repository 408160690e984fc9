"""``POST /conversations/{id}/upload?userId=`` and serving the uploaded files.

The client sends multipart/form-data: a part ``activity`` (filename ``blob``, type
``application/vnd.microsoft.activity``, the activity JSON whose ``attachments`` have a
``name`` and ``contentType`` but no ``contentUrl``) and one part ``file`` per attachment,
named like the attachment. Files are kept through Django's default storage under
``directline/<conversation>/<random id>/<name>``; the stored activity's attachments get a
``contentUrl`` under ``/v3/directline/conversations/<id>/attachments/``, served only to
holders of a valid token for that conversation, or the tenant's secret, in the
``Authorization: Bearer`` header. Never in the query: daphne's access log records query
strings, and credentials stay out of logs.
"""

import logging
import mimetypes
import re
import secrets
from urllib.parse import quote

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.http import FileResponse, JsonResponse
from django.utils.text import get_valid_filename

from webchat.conf import get_settings
from webchat.tenant_paths import directline_base

from .activities import as_user, store_user_activity
from .auth import authenticate, conversation_for
from .conversations import public_scheme
from .errors import DirectLineError, bad_argument, directline_view, not_found, too_large
from .payloads import parse_activity, parse_json
from .throttling import release_upload, reserve_upload, throttle
from .tokens import with_renewal

logger = logging.getLogger(__name__)

STORAGE_PREFIX = "directline"
ACTIVITY_PART = "activity"
_ATTACHMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_FILENAME = 100
#: Served inline; anything else is a download, so an uploaded page cannot run on our origin.
INLINE_TYPES = {
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "text/plain",
    "application/pdf",
    "audio/mpeg",
    "audio/wav",
    "video/mp4",
}


def _activity_part(request, limit: int) -> dict | None:
    """The ``activity`` part as a checked activity, or None when the client sent none."""
    part = request.FILES.get(ACTIVITY_PART)
    if part is not None:
        if part.size > limit:
            raise too_large(f"The activity is larger than {limit} bytes.")
        raw = part.read()
    elif ACTIVITY_PART in request.POST:
        raw = request.POST[ACTIVITY_PART].encode("utf-8", "surrogatepass")
        if len(raw) > limit:
            raise too_large(f"The activity is larger than {limit} bytes.")
    else:
        return None
    return parse_activity(parse_json(raw))


def _file_parts(request) -> list:
    return [
        upload
        for name, uploads in request.FILES.lists()
        if name != ACTIVITY_PART
        for upload in uploads
    ]


def _safe_filename(name: str | None) -> str:
    try:
        return get_valid_filename((name or "file")[-MAX_FILENAME:])
    except SuspiciousFileOperation:
        return "file"


def _attach(activity: dict, upload, content_url: str) -> None:
    """Give the attachment named like ``upload`` its contentUrl (or add one for it)."""
    attachments = activity.setdefault("attachments", [])
    for attachment in attachments:
        if attachment.get("name") == upload.name and "contentUrl" not in attachment:
            attachment["contentUrl"] = content_url
            attachment.setdefault("contentType", upload.content_type)
            return
    attachments.append(
        {"contentType": upload.content_type, "contentUrl": content_url, "name": upload.name}
    )


def _save(request, conversation_id: str, upload) -> tuple[str, str]:
    """Store one file; return its storage name and public contentUrl."""
    prefix = f"{STORAGE_PREFIX}/{conversation_id}/"
    wanted = f"{prefix}{secrets.token_urlsafe(16)}/{_safe_filename(upload.name)}"
    name = default_storage.save(wanted, upload, max_length=255)
    attachment_id, _, filename = name[len(prefix) :].partition("/")
    path = (
        f"{directline_base(request)}/conversations/{quote(conversation_id, safe='')}"
        f"/attachments/{attachment_id}/{quote(filename, safe='')}"
    )
    return name, f"{public_scheme(request)}://{request.get_host()}{path}"


@directline_view("POST")
def upload(request, conversation_id):
    """Called by the client to send an activity with attachments (multipart)."""
    caller = authenticate(request)
    conversation = conversation_for(caller, conversation_id)
    throttle(request, "uploads", caller)
    limits = get_settings()  # one snapshot for the whole request
    if request.content_type != "multipart/form-data":
        raise DirectLineError(
            415,
            "UnsupportedMediaType",
            "upload takes multipart/form-data: a part 'activity' and one part 'file' per "
            "attachment.",
        )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limits.max_upload_body:
        raise too_large(
            f"The upload is larger than {limits.max_upload_body} bytes "
            f"({limits.max_upload_files} files of {limits.max_file_bytes} bytes at most)."
        )
    activity = _activity_part(request, limits.max_activity_bytes) or parse_activity(
        {"type": "message"}
    )
    files = _file_parts(request)
    if not files:
        raise bad_argument("The upload has no file part; send one part 'file' per attachment.")
    if len(files) > limits.max_upload_files:
        raise bad_argument(f"At most {limits.max_upload_files} files per upload.")
    for file in files:
        if file.size > limits.max_file_bytes:
            raise too_large(
                f"File {file.name[:MAX_FILENAME]!r} is larger than {limits.max_file_bytes} bytes."
            )
    activity = as_user(activity, caller, request.GET.get("userId") or None)
    reserve_upload(caller, files)
    saved = []
    try:
        for file in files:
            name, content_url = _save(request, conversation.id, file)
            saved.append(name)
            _attach(activity, file, content_url)
        stored = store_user_activity(conversation, activity)
    except BaseException:
        # Nothing half-written: the activity failed, so its files go too.
        release_upload(caller, files)
        for name in saved:
            default_storage.delete(name)
        raise
    # A user's post, like POST .../activities: it carries the renewed token (the seed's rule).
    return JsonResponse(with_renewal({"id": stored["id"]}, caller, always=True))


@directline_view("GET")
def attachment(request, conversation_id, attachment_id, filename):
    """Called by clients following a contentUrl: the file, to the conversation's members."""
    caller = authenticate(request)
    conversation = conversation_for(caller, conversation_id)
    if not _ATTACHMENT_ID.fullmatch(attachment_id) or filename in {"", ".", ".."}:
        raise not_found("No such attachment.")
    name = f"{STORAGE_PREFIX}/{conversation.id}/{attachment_id}/{filename}"
    try:
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, IsADirectoryError, SuspiciousFileOperation) as exc:
        raise not_found("No such attachment.") from exc
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    inline = content_type in INLINE_TYPES
    response = FileResponse(
        handle,
        content_type=content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        filename=filename,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response
