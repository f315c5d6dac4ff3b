"""An HTTP-unaware TCP proxy that makes a storage connection unstable, reproducibly.

Each new connection may be answered at once with `503 SlowDown`; each response on the
others draws its fate from a seeded random generator: cut after a random number of its
bytes, delayed, or passed through. Decisions per response, not per connection, because
clients keep connections alive across many requests.
It counts the bytes it forwards to the client, so a test can tell a resume from a restart.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass

SLOW_DOWN = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>SlowDown</Code>"
    b"<Message>Please reduce your request rate.</Message></Error>"
)


@dataclass
class Faults:
    cut: float = 0.0  # share of responses cut midway
    cut_within: int = 1 << 20  # ...after a uniform number of bytes up to this
    slow_down: float = 0.0  # share of connections answered 503 SlowDown
    delay: float = 0.0  # share of responses that start late
    max_delay: float = 0.2  # ...by up to this many seconds
    seed: int = 0


@dataclass
class Counts:
    connections: int = 0
    responses: int = 0
    cuts: int = 0
    slow_downs: int = 0
    delays: int = 0
    bytes_down: int = 0  # forwarded from the server to the client


class FaultProxy:
    def __init__(self, target_port: int, faults: Faults, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.faults = faults
        self.counts = Counts()
        self._random = random.Random(faults.seed)
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter):
        self.counts.connections += 1
        try:
            if self._random.random() < self.faults.slow_down:
                self.counts.slow_downs += 1
                await client_in.readuntil(b"\r\n\r\n")
                client_out.write(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(SLOW_DOWN), SLOW_DOWN)
                )
                await client_out.drain()
                return
            server_in, server_out = await asyncio.open_connection(*self.target)
            asked = asyncio.Event()  # set when the client sends: the next bytes back answer it
            upstream = asyncio.create_task(self._requests(client_in, server_out, asked))
            try:
                await self._responses(server_in, client_out, asked)
            finally:
                upstream.cancel()
                server_out.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            client_out.transport.abort()

    async def _requests(self, source, sink, asked: asyncio.Event) -> None:
        try:
            while data := await source.read(65536):
                asked.set()
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass

    async def _responses(self, source, sink, asked: asyncio.Event) -> None:
        faults = self.faults
        sent, cut_after = 0, None
        while data := await source.read(65536):
            if asked.is_set():  # a new response: draw its fate
                asked.clear()
                self.counts.responses += 1
                sent, cut_after = 0, None
                if self._random.random() < faults.cut:
                    cut_after = self._random.randint(1, faults.cut_within)
                if self._random.random() < faults.delay:
                    self.counts.delays += 1
                    await asyncio.sleep(self._random.uniform(0, faults.max_delay))
            if cut_after is not None and sent + len(data) >= cut_after:
                data = data[: cut_after - sent]
                sink.write(data)
                self.counts.bytes_down += len(data)
                await sink.drain()
                self.counts.cuts += 1
                return  # the caller aborts the connection: a reset, mid-body
            sink.write(data)
            sent += len(data)
            self.counts.bytes_down += len(data)
            await sink.drain()
