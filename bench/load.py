"""HTTP load: wrk when it is installed (`make bench` installs it), else an asyncio client.

The load is a list of prepared POST requests (headers, body), sent in turn, over and
over. Both servers of a comparison get the same generator with the same settings.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

PreparedRequests = list[tuple[dict[str, str], bytes]]  # (headers, body) of each request, ready to send


@dataclass(frozen=True)
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    generator: str


# One request per line: "Name: value" headers separated by \x1f, a tab, then the body.
_WRK_SCRIPT = r"""
local prepared = {}
local n = 0
init = function(args)
  for line in io.lines(os.getenv("BENCH_REQUESTS")) do
    local head, body = line:match("^(.-)\t(.*)$")
    local headers = {}
    for name, value in head:gmatch("([^:\31]+): ([^\31]*)") do headers[name] = value end
    prepared[#prepared + 1] = wrk.format("POST", nil, headers, body)
  end
end
request = function()
  n = n % #prepared + 1
  return prepared[n]
end
"""


def post_load(url: str, requests: PreparedRequests, *, connections: int, seconds: int) -> Load:
    if shutil.which("wrk"):
        return _wrk(url, requests, connections, seconds)
    return asyncio.run(_asyncio_load(url, requests, connections, seconds))


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _wrk(url: str, requests: PreparedRequests, connections: int, seconds: int) -> Load:
    with tempfile.TemporaryDirectory() as directory:
        script, lines = Path(directory) / "load.lua", Path(directory) / "requests.txt"
        script.write_text(_WRK_SCRIPT)
        with lines.open("wb") as out:
            for headers, body in requests:
                head = "\x1f".join(f"{name}: {value}" for name, value in headers.items())
                out.write(head.encode() + b"\t" + body + b"\n")
        output = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            capture_output=True,
            text=True,
            check=True,
            env={"BENCH_REQUESTS": str(lines), "PATH": "/usr/bin:/bin"},
        ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Load(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=_ms(re.search(r"^\s*50%\s+(\S+)", output, re.MULTILINE).group(1)),
        p99_ms=_ms(re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE).group(1)),
        errors=(int(errors.group(1)) if errors else 0)
        + (sum(map(int, socket_errors.groups())) if socket_errors else 0),
        generator="wrk -t1",
    )


async def _asyncio_load(url: str, requests: PreparedRequests, connections: int, seconds: int) -> Load:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    turns = itertools.cycle(requests)

    async def client(http: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            headers, body = next(turns)
            started = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as http:
        await asyncio.gather(*(client(http) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(
        requests_per_second=len(latencies) / elapsed,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        errors=errors,
        generator="asyncio client",
    )
