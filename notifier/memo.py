"""The one bounded cache of the notifier's hot paths: a dict that computes what it lacks."""


class BoundedCache(dict):
    """``cache[key]`` is ``compute(key)``, computed once while remembered.

    A hit is a plain dict lookup (no Python call, unlike ``functools.lru_cache``: these run
    once or twice per message). At most ``maxsize`` entries: when full, it starts over. When
    ``compute`` raises, nothing is stored.
    """

    __slots__ = ("compute", "maxsize")

    def __init__(self, compute, maxsize):
        super().__init__()
        self.compute = compute
        self.maxsize = maxsize

    def __missing__(self, key):
        value = self.compute(key)
        if len(self) >= self.maxsize:
            self.clear()
        self[key] = value
        return value
