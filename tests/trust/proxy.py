"""A small TCP proxy that loses answers: it passes each request to the server, waits for
the server's whole response -- so the server has finished, and committed, the call -- and
then drops it (closes the till's connection without a byte), holds it back past the till's
timeout, or passes it on. One HTTP exchange per connection (the tills send
``Connection: close``), so "the response" is everything the server sent before it closed.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any


class LossyProxy:
    """``with LossyProxy(upstream_port, seed) as proxy:`` -- listen on ``proxy.port``."""

    def __init__(self, upstream_port: int, seed: int, *, drop: float = 0.2,
                 delay: float = 0.1, delay_s: float = 4.0) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random(seed)
        self.drop, self.delay, self.delay_s = drop, delay, delay_s
        self.fates: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lossy-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> LossyProxy:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1",
                                                               self.upstream_port)
        except OSError:
            client_w.close()
            return
        upstream = asyncio.ensure_future(self._pipe(client_r, server_w))
        try:
            response = await server_r.read(-1)  # until the server closes: the whole answer
        except OSError:
            response = b""
        upstream.cancel()
        server_w.close()
        if not response:
            self.fates["server_gone"] += 1
            client_w.close()
            return
        roll = self.rng.random()
        if roll < self.drop:
            self.fates["dropped"] += 1
            client_w.transport.abort()
            return
        if roll < self.drop + self.delay:
            self.fates["delayed"] += 1
            await asyncio.sleep(self.delay_s)
        else:
            self.fates["forwarded"] += 1
        await self._send(client_w, response)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
        try:
            writer.write(data)
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def stats(self) -> dict[str, Any]:
        return dict(self.fates)
