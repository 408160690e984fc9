"""The default notifier: local delivery only, no configuration, no network."""

from .base import BaseNotifier


class InMemoryNotifier(BaseNotifier):
    """Publishing is a group send on this process's channel layer, nothing more.

    Right for one process (development, tests, a single replica). Consumers in other
    processes only hear about a bump if the channel layer itself spans processes.
    """
