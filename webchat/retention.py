"""Retention: delete conversations, activities and uploaded files older than a cutoff.

Run by ``manage.py apply_retention`` (README "Limits and quotas": how to run it daily).

* A conversation with nothing newer than the cutoff (created before it, no activity since)
  is deleted whole: its row, its activities and its files (``directline/<id>/``).
* In a conversation still in use, activities older than the cutoff are deleted, with the
  uploaded files they point to. The watermark stays: what a client has not seen yet and
  is older than the cutoff is gone, the rest pages on as before.

Deleted files give their bytes back to the tenant's upload quota (``webchat.quota``).
An activity's ``contentUrl`` is the client's text: only a URL naming a file of the
activity's own conversation is followed, so an activity cannot point retention at another
conversation's files, and a file counts once, when it is actually deleted.
"""

import logging
import posixpath
from collections import Counter
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from django.core.files.storage import default_storage
from django.db import transaction

from .models import Activity, Conversation
from .quota import release
from .views.uploads import STORAGE_PREFIX

logger = logging.getLogger(__name__)

_ATTACHMENT_PATH = "/v3/directline/conversations/{}/attachments/"


@dataclass
class Report:
    conversations: int = 0
    activities: int = 0
    files: int = 0
    bytes: int = 0

    def __str__(self):
        return (
            f"{self.conversations} conversations, {self.activities} activities, "
            f"{self.files} files ({self.bytes} bytes)"
        )


class Retention:
    """Deletes what is older than ``cutoff`` (an aware datetime), ``batch`` rows at a time
    so no transaction holds many locks. ``dry_run`` counts without deleting."""

    def __init__(self, cutoff, *, batch: int = 500, dry_run: bool = False, storage=None):
        self.cutoff = cutoff
        self.batch = batch
        self.dry_run = dry_run
        self.storage = storage or default_storage
        self.report = Report()
        self._released = Counter()  # tenant id -> bytes of deleted files

    def run(self) -> Report:
        self._expire_conversations()
        self._expire_activities()
        if not self.dry_run:
            for tenant_id, size in self._released.items():
                release(tenant_id, size)
        return self.report

    # Whole conversations

    def _expired(self):
        return Conversation.objects.filter(created__lt=self.cutoff).exclude(
            activities__created__gte=self.cutoff
        )

    def _expire_conversations(self):
        last = ""
        while True:
            # Keyset paging: a dry run deletes nothing, so an offset would not move on.
            rows = list(
                self._expired().filter(pk__gt=last).order_by("pk")
                .values_list("pk", "tenant_id")[: self.batch]
            )  # fmt: skip
            if not rows:
                return
            last = rows[-1][0]
            if not self.dry_run:
                with transaction.atomic():
                    # Again, inside the transaction: a message may have arrived meanwhile.
                    ids = list(self._expired().filter(pk__in=[r[0] for r in rows])
                               .values_list("pk", flat=True))  # fmt: skip
                    activities = Activity.objects.filter(conversation_id__in=ids).count()
                    Conversation.objects.filter(pk__in=ids).delete()
                kept = set(ids)
                rows = [row for row in rows if row[0] in kept]
            else:
                activities = Activity.objects.filter(
                    conversation_id__in=[r[0] for r in rows]
                ).count()
            self.report.conversations += len(rows)
            self.report.activities += activities
            for conversation_id, tenant_id in rows:
                self._delete_tree(f"{STORAGE_PREFIX}/{conversation_id}", tenant_id)

    def _delete_tree(self, path, tenant_id):
        """Delete every file under ``path``, then its directories (bottom up)."""
        try:
            directories, files = self.storage.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return
        for directory in directories:
            self._delete_tree(posixpath.join(path, directory), tenant_id)
        for name in files:
            self._delete_file(posixpath.join(path, name), tenant_id)
        if not self.dry_run:
            try:
                self.storage.delete(path)  # FileSystemStorage removes an empty directory
            except OSError:
                logger.warning("Retention could not remove the directory %s", path)

    def _delete_file(self, name, tenant_id):
        try:
            size = self.storage.size(name)
        except (FileNotFoundError, OSError):
            return
        if not self.dry_run:
            self.storage.delete(name)
        self.report.files += 1
        self.report.bytes += size
        self._released[tenant_id] += size

    # Old activities of conversations still in use

    def _expire_activities(self):
        last = 0
        while True:
            rows = list(
                Activity.objects.filter(created__lt=self.cutoff, pk__gt=last)
                # Gone with their conversation already (or, in a dry run, to be).
                .exclude(conversation_id__in=self._expired().values("pk"))
                .order_by("pk")
                .values_list("pk", "conversation_id", "conversation__tenant_id", "data")[
                    : self.batch
                ]
            )
            if not rows:
                return
            last = rows[-1][0]
            if not self.dry_run:
                Activity.objects.filter(pk__in=[row[0] for row in rows]).delete()
            self.report.activities += len(rows)
            for _, conversation_id, tenant_id, data in rows:
                for name in attachment_names(conversation_id, data):
                    self._delete_file(name, tenant_id)


def attachment_names(conversation_id: str, activity) -> list[str]:
    """Storage names of the uploaded files an activity points to, in its own conversation."""
    if not isinstance(activity, dict) or not isinstance(activity.get("attachments"), list):
        return []
    prefix = _ATTACHMENT_PATH.format(quote(conversation_id, safe=""))
    names = []
    for attachment in activity["attachments"]:
        url = attachment.get("contentUrl") if isinstance(attachment, dict) else None
        if not isinstance(url, str):
            continue
        path = urlsplit(url).path
        if not path.startswith(prefix):
            continue
        attachment_id, _, filename = path[len(prefix) :].partition("/")
        filename = unquote(filename)
        if not attachment_id or not filename or "/" in filename or filename in {".", ".."}:
            continue
        if "/" in attachment_id or attachment_id in {".", ".."}:
            continue
        names.append(f"{STORAGE_PREFIX}/{conversation_id}/{attachment_id}/{filename}")
    return names
