"""A TCP proxy for tests that need a wedged connection: open, but nothing gets through.

::

    proxy = await TcpProxy.start(upstream_port)      # on the test's event loop
    url = f"redis://127.0.0.1:{proxy.port}/0"
    proxy.freeze()      # connections open now stop forwarding (both ways); new ones work
    proxy.cut()         # close every connection and refuse new ones, as a network cut
    proxy.restore()     # accept and forward again
    await proxy.aclose()

A frozen connection is what a NAT or firewall that forgot the connection looks like to a
client: its socket stays open, writes succeed (into the kernel's buffers), nothing comes
back. Only the connections open at ``freeze()`` are frozen, so a client that reconnects
gets through again.
"""

import asyncio
import contextlib


class TcpProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream_port>; runs on the running loop."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = None
        self._server = None
        self._links = []  # {"frozen": Event, "closed": bool, "writers": ..., "tasks": ...}
        self._cut = False

    @classmethod
    async def start(cls, upstream_port):
        proxy = cls(upstream_port)
        proxy._server = await asyncio.start_server(proxy._accept, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        return proxy

    @property
    def connections(self):
        return sum(1 for link in self._links if not link["closed"])

    def freeze(self, older_than=0.0):
        """Stop forwarding on every connection open now (they stay open); with
        ``older_than``, only on those open for at least that many seconds."""
        now = asyncio.get_running_loop().time()
        for link in self._links:
            if now - link["opened"] >= older_than:
                link["frozen"].clear()

    def cut(self):
        """Close every connection; until :meth:`restore`, close new ones at once."""
        self._cut = True
        for link in self._links:
            for writer in link["writers"]:
                writer.close()

    def restore(self):
        self._cut = False

    async def _accept(self, client_reader, client_writer):
        if self._cut:
            client_writer.close()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            return
        running = asyncio.Event()
        running.set()
        link = {"frozen": running, "closed": False,
                "writers": (client_writer, upstream_writer),
                "opened": asyncio.get_running_loop().time()}
        link["tasks"] = [
            asyncio.create_task(self._pipe(client_reader, upstream_writer, running, link)),
            asyncio.create_task(self._pipe(upstream_reader, client_writer, running, link)),
        ]
        self._links.append(link)

    async def _pipe(self, reader, writer, running, link):
        try:
            while True:
                data = await reader.read(65536)
                await running.wait()  # frozen: hold the data, forward nothing, keep it open
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            link["closed"] = True
            for other in link["writers"]:
                other.close()

    async def aclose(self):
        """Close the listening socket and every connection; wait for the pipes to end."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in self._links:
            for writer in link["writers"]:
                writer.close()
            for task in link["tasks"]:
                task.cancel()
        for link in self._links:
            for task in link["tasks"]:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
