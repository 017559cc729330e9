"""Operations API throughput: GET-by-key, filtered list and create, on SQLite and on PostgreSQL.

Starts a real `openams serve` per database (free ports, a temporary data directory, a fresh
PostgreSQL database that is dropped afterwards), seeds assets, then drives each case with a fixed
number of keep-alive connections for a fixed time and prints requests/s and p50/p99 latency next to
a baseline measured in the same run: a minimal raw ASGI app on uvicorn (same server settings as
`openams serve`) answering a fixed JSON body of the same size as a GET-by-key reply. Ratios, not
absolute figures, are what compare across machines.

    .venv/bin/python bench/api.py [--db sqlite|postgres|both] [--seconds 5] [--concurrency 16] [--seed 2000]

Exits 1 if any request failed (every response status is checked), 130 on Ctrl-C. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from _common import HOST, Process, clean_env, free_port, log
from _common import start_openams as start_openams_server

ACCOUNT = "benchaccount"
DEFAULT_PG_URL = os.environ.get("OPENAMS_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SEED_PREFIX = "bench-"
FILTER_PREFIX = "bench-1"
LIST_TOP = 50
# The uvicorn settings `openams serve` uses for its API listener (src/openams/app.py); the baseline
# servers run with the same ones so the comparison is server-for-server.
UVICORN_SETTINGS: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "off",
                                    "timeout_keep_alive": 30, "server_header": False}


# ---- load generator: a minimal HTTP/1.1 keep-alive client on asyncio streams --------------------------
class Conn:
    """One keep-alive connection; `request` sends prebuilt bytes and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def request(self, data: bytes) -> tuple[int, bytes, bool]:
        """Returns (status, body, server-closes-connection)."""
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if not chunked:
            body = await self.reader.readexactly(length) if length else b""
            return status, body, close
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers expected
                return status, b"".join(parts), close
            parts.append((await self.reader.readexactly(size + 2))[:-2])

    def close(self) -> None:
        self.writer.close()


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""


def request_bytes(req: Request, port: int, token: str) -> bytes:
    head = (f"{req.method} {req.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "x-ms-version: 2.19\r\nAccept: application/json\r\nDataServiceVersion: 3.0\r\n"
            "MaxDataServiceVersion: 3.0\r\n")
    if req.method in ("POST", "PUT", "PATCH", "MERGE"):
        head += f"Content-Type: application/json\r\nContent-Length: {len(req.body)}\r\n"
    return (head + "\r\n").encode("latin-1") + req.body


@dataclass
class Stats:
    ok: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    body_bytes: int = 0
    elapsed: float = 0.0
    gen_cpu: float | None = None
    srv_cpu: float | None = None

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 3:
            self.samples.append(f"{kind}: {detail[:300]}")

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds used so far by a child process (all its threads), from /proc; None elsewhere."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def drive(port: int, token: str, concurrency: int, make: Callable[[], Request | None], expect: int,
                warmup: float = 0.0, seconds: float | None = None, server_pid: int | None = None,
                on_ok: Callable[[bytes], None] | None = None) -> Stats:
    """Run `concurrency` workers, each on its own connection, sending `make()` requests.

    Timed mode (`seconds`): requests started during the first `warmup` seconds are not recorded;
    workers stop sending after warm-up + seconds. Otherwise workers stop when `make()` returns None.
    Every response whose status is not `expect` counts as an error, as does every transport failure.
    """
    stats = Stats()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds if seconds is not None else float("inf")

    async def worker() -> None:
        conn: Conn | None = None
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= stop_at:
                    return
                req = make()
                if req is None:
                    return
                data = request_bytes(req, port, token)
                try:
                    if conn is None:
                        conn = await Conn.open(port)
                    status, body, close = await conn.request(data)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    stats.error(type(exc).__name__, str(exc) or repr(exc))
                    if conn is not None:
                        conn.close()
                    conn = None
                    await asyncio.sleep(0.05)  # a dead server must not turn into a busy loop
                    continue
                t1 = time.perf_counter()
                if close:
                    conn.close()
                    conn = None
                if status != expect:
                    text = body.decode("utf-8", "replace")
                    stats.error(f"HTTP {status}", f"{req.method} {req.path} -> {text}")
                    continue
                if on_ok is not None:
                    on_ok(body)
                if t0 >= measure_from:
                    stats.ok += 1
                    stats.latencies.append(t1 - t0)
                    stats.body_bytes += len(body)
        finally:
            if conn is not None:
                conn.close()

    async def cpu_window() -> tuple[float | None, float]:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        return process_cpu(server_pid), time.process_time()

    window = asyncio.ensure_future(cpu_window())
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    srv0, gen0 = await window
    stats.elapsed = time.perf_counter() - measure_from
    if seconds is not None and stats.elapsed > 0:
        stats.gen_cpu = (time.process_time() - gen0) / stats.elapsed
        srv1 = process_cpu(server_pid)
        if srv0 is not None and srv1 is not None:
            stats.srv_cpu = (srv1 - srv0) / stats.elapsed
    return stats


def new_loop_runner() -> tuple[asyncio.Runner, str]:
    try:
        import uvloop

        return asyncio.Runner(loop_factory=uvloop.new_event_loop), "uvloop"
    except ImportError:
        return asyncio.Runner(), "asyncio"


def run_async(coro: Any) -> Any:
    runner, _ = new_loop_runner()
    with runner:
        return runner.run(coro)


# ---- the servers under test ---------------------------------------------------------------------------
@dataclass
class Target:
    label: str
    port: int
    process: Process
    token: str = ""


def start_openams(stack: contextlib.ExitStack, label: str, workdir: Path, database_url: str | None) -> Target:
    server = start_openams_server(stack, workdir, name=f"openams serve ({label})", data_dir=workdir / f"data-{label}",
                                  account=ACCOUNT, database_url=database_url, log_name=f"serve-{label}.log")
    return Target(label, server.port, server.process, server.token())


def start_reference(stack: contextlib.ExitStack, kind: str, workdir: Path, body_size: int) -> Target:
    port = free_port()
    proc = Process(f"{kind} server", [sys.executable, os.path.abspath(__file__), "--serve", kind,
                                      "--port", str(port), "--body-size", str(body_size)],
                   workdir / f"{kind}.log", clean_env())
    stack.callback(proc.stop)
    proc.wait_http(port, "/")
    return Target(kind, port, proc, token=secrets.token_urlsafe(200))  # a token-sized header, never checked


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh, empty database on the server of `admin_url`; dropped on exit (also on errors)."""
    import psycopg

    name = f"openams_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(admin_url)._replace(path="/" + name).geturl()
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except psycopg.errors.SyntaxError:  # PostgreSQL < 13
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def postgres_version(admin_url: str) -> str:
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            return "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]
    except Exception as exc:
        return "PostgreSQL (unreachable: " + " ".join(str(exc).split())[:120] + ")"


# ---- reference servers (run as `bench/api.py --serve baseline|thread|raw`) ----------------------------
def reference_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least the 10-byte skeleton)."""
    return json.dumps({"pad": "x" * max(0, size - 10)}, separators=(",", ":")).encode()


def serve_reference(kind: str, port: int, body_size: int) -> None:
    body = reference_body(body_size)
    if kind == "raw":
        response = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                    + str(len(body)).encode() + b"\r\n\r\n" + body)

        class Raw(asyncio.Protocol):
            """Answers every request head with the fixed response; no parsing beyond the blank line
            (the load generator sends no bodies to it). Measures the load generator's ceiling."""

            def connection_made(self, transport: Any) -> None:
                self.transport, self.buffer = transport, b""

            def data_received(self, data: bytes) -> None:
                self.buffer += data
                n = self.buffer.count(b"\r\n\r\n")
                if n:
                    self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4:]
                    self.transport.write(response * n)

        async def main() -> None:
            server = await asyncio.get_running_loop().create_server(Raw, HOST, port)
            async with server:
                await server.serve_forever()

        run_async(main())
        return

    import anyio
    import uvicorn

    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if kind == "thread":  # the worker-thread hop openams makes for every API request
            await anyio.to_thread.run_sync(len, body)
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host=HOST, port=port, **UVICORN_SETTINGS)


# ---- the benchmark ------------------------------------------------------------------------------------
@dataclass
class Row:
    target: str
    case: str
    stats: Stats
    base: Stats | None = None
    """The baseline this row's req/s is divided by (None: no ratio)."""


def seed(target: Target, count: int, concurrency: int) -> list[str]:
    width = len(str(max(count - 1, 1)))
    names = iter([f"{SEED_PREFIX}{i:0{width}d}" for i in range(count)])
    ids: list[str] = []

    def make() -> Request | None:
        name = next(names, None)
        return None if name is None else Request("POST", "/api/Assets", json.dumps({"Name": name}).encode())

    started = time.monotonic()
    stats = run_async(drive(target.port, target.token, concurrency, make, 201,
                            on_ok=lambda body: ids.append(json.loads(body)["Id"])))
    if stats.errors:
        raise RuntimeError(f"seeding failed: {dict(stats.errors)}; {stats.samples}")
    took = time.monotonic() - started
    log(f"  seeded {len(ids)} assets in {took:.1f} s ({len(ids) / took:.0f} creates/s)")
    return ids


def list_path() -> str:
    return f"/api/Assets?$filter={quote(f'startswith(Name,{FILTER_PREFIX!r})')}&$top={LIST_TOP}"


def sanity_check(target: Target, ids: list[str], failures: list[str]) -> int:
    """One request per case, checking bodies (the timed runs check statuses only).

    Returns the size of a GET-by-key reply (the baseline answers a body of that size)."""
    headers = {"Authorization": f"Bearer {target.token}", "x-ms-version": "2.19",
               "Accept": "application/json"}
    size = 0
    with httpx.Client(base_url=f"http://{HOST}:{target.port}", headers=headers, timeout=30) as http:
        r = http.get(f"/api/Assets('{quote(ids[0], safe='')}')")
        if r.status_code != 200 or r.json().get("Id") != ids[0]:
            failures.append(f"{target.label} sanity check, GET by key: {r.status_code} {r.text[:200]}")
        size = len(r.content)
        r = http.get(list_path())
        values = r.json().get("value", []) if r.status_code == 200 else []
        if r.status_code != 200 or not values or not all(v["Name"].startswith(FILTER_PREFIX) for v in values):
            failures.append(f"{target.label} sanity check, filtered list: {r.status_code} {r.text[:200]}")
        else:
            log(f"  the filtered list returns {len(values)} assets per request")
        r = http.post("/api/Assets", json={"Name": "sanity-check"})
        if r.status_code != 201 or not r.json().get("Id"):
            failures.append(f"{target.label} sanity check, create: {r.status_code} {r.text[:200]}")
    return size


def measure(target: Target, case: str, make: Callable[[], Request], expect: int,
            args: argparse.Namespace) -> Stats:
    stats = run_async(drive(target.port, target.token, args.concurrency, make, expect, warmup=args.warmup,
                            seconds=args.seconds, server_pid=target.process.pid))
    note = f", {sum(stats.errors.values())} errors" if stats.errors else ""
    log(f"  {target.label:<9} {case:<44} {stats.rate:7.0f} req/s  p50 {stats.pct(50):7.2f} ms"
        f"  p99 {stats.pct(99):7.2f} ms{note}")
    return stats


def measure_reference(kind: str, case: str, body_size: int, workdir: Path, args: argparse.Namespace) -> Stats:
    with contextlib.ExitStack() as stack:
        return measure(start_reference(stack, kind, workdir, body_size), case, lambda: Request("GET", "/"),
                       200, args)


def bench_database(label: str, database_url: str | None, workdir: Path, args: argparse.Namespace,
                   rows: list[Row], refs: list[Row], failures: list[str]) -> None:
    """Seed one openams, then measure: its baseline, (the first time) the references, then each case."""
    with contextlib.ExitStack() as stack:
        log(f"{label}: starting openams serve")
        target = start_openams(stack, label, workdir, database_url)
        ids = seed(target, args.seed, args.concurrency)
        size = sanity_check(target, ids, failures) or 400
        base_case = "baseline: raw ASGI app on uvicorn"
        base = measure_reference("baseline", base_case, size, workdir, args)
        rows.append(Row(label, base_case, base, base))
        if not refs:
            refs.append(Row("reference", "load generator ceiling (raw asyncio server)",
                            measure_reference("raw", "load generator ceiling", size, workdir, args)))
            refs.append(Row("reference", "raw ASGI app + worker-thread hop",
                            measure_reference("thread", "raw ASGI app + worker-thread hop", size, workdir,
                                              args), base))
        counter = itertools.count()
        cases: list[tuple[str, Callable[[], Request], int]] = [
            ("GET Assets('<id>')",
             lambda: Request("GET", f"/api/Assets('{quote(random.choice(ids), safe='')}')"), 200),
            (f"GET Assets?$filter=startswith(..)&$top={LIST_TOP}", lambda: Request("GET", list_path()), 200),
            ("POST Assets", lambda: Request("POST", "/api/Assets",
                                            json.dumps({"Name": f"load-{next(counter)}"}).encode()), 201),
        ]
        for case, make, expect in cases:
            rows.append(Row(label, case, measure(target, case, make, expect, args), base))
            proc = target.process
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with status {proc.proc.returncode} during '{case}'; "
                                   f"its log ends with:\n{proc.tail(10)}")


def machine_line() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + " ".join(line.split(":", 1)[1].split()) + ")"
                break
    return (f"{os.cpu_count()} cores{model}, {platform.system()} {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def print_report(rows: list[Row], args: argparse.Namespace, versions: str, loads: tuple[str, str]) -> None:
    import uvicorn

    print()
    print("openams Operations API benchmark (bench/api.py)")
    print(f"machine    {machine_line()}; load average {loads[0]} at start, {loads[1]} at end")
    print(f"software   uvicorn {uvicorn.__version__} (one process, as `openams serve`); {versions}")
    print(f"load       {args.concurrency} keep-alive HTTP/1.1 connections from one {new_loop_runner()[1]} "
          "process on this machine;")
    print(f"           {args.warmup:g} s warm-up + {args.seconds:g} s measured per case; "
          f"{args.seed} assets seeded per database")
    print()
    head = (f"{'target':<9} {'case':<44} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'vs base':>7} "
            f"{'resp B':>6} {'srv cpu':>7} {'gen cpu':>7} {'errors':>6}")
    print(head)
    print("-" * len(head))

    def pct(v: float | None) -> str:
        return f"{v * 100:.0f}%" if v is not None else "-"

    for r in rows:
        s = r.stats
        ratio = f"{s.rate / r.base.rate:.3f}" if r.base is not None and r.base.rate else "-"
        size = s.body_bytes // s.ok if s.ok else 0
        print(f"{r.target:<9} {r.case:<44} {s.rate:7.0f} {s.pct(50):7.2f} {s.pct(99):7.2f} {ratio:>7} "
              f"{size:6d} {pct(s.srv_cpu):>7} {pct(s.gen_cpu):>7} {sum(s.errors.values()):6d}")
    print()
    print("vs base  req/s divided by the baseline's req/s: a raw ASGI app on uvicorn with the settings")
    print("         of `openams serve`, answering a JSON body the size of a GET-by-key reply, measured just")
    print("         before that database's cases by the same client (reference rows: vs the first baseline)")
    print("srv cpu  CPU used by the server process (all threads; 100% = one core); gen cpu: by this client")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per case (default 5)")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="unmeasured seconds before each case (default 1)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    p.add_argument("--seed", type=int, default=2000, help="assets created before measuring (default 2000)")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL,
                   help="PostgreSQL server to create the scratch database on (default $OPENAMS_PG_URL or "
                        "postgresql://postgres@127.0.0.1:5432/test)")
    p.add_argument("--serve", choices=["baseline", "thread", "raw"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--body-size", type=int, default=400, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.concurrency < 1 or args.seed < 1:
        p.error("--seconds, --concurrency and --seed must be positive, --warmup not negative")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve_reference(args.serve, args.port, args.body_size)
        return 0
    try:
        import openams  # noqa: F401  (the servers are started with this interpreter)
    except ImportError:
        log("openams is not importable by this Python: run .venv/bin/python bench/api.py")
        return 2
    signal.signal(signal.SIGTERM, _terminate)  # clean up on `kill` too
    random.seed(1)
    rows: list[Row] = []
    refs: list[Row] = []
    failures: list[str] = []
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    versions = [f"SQLite {sqlite3.sqlite_version}"]
    if "postgres" in dbs:
        versions.append(postgres_version(args.pg_url))
    load_start = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="openams-bench-api-"))
    try:
        for db in dbs:
            try:
                if db == "sqlite":
                    bench_database("sqlite", None, workdir, args, rows, refs, failures)
                else:
                    with postgres_database(args.pg_url) as url:
                        bench_database("postgres", url, workdir, args, rows, refs, failures)
            except Exception as exc:  # a server that fails to start or dies, PostgreSQL unreachable, ...
                failures.append(f"{db}: {type(exc).__name__}: {exc}")
                log(f"{db}: FAILED: {type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        log("interrupted: servers stopped, scratch database dropped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report([*refs, *rows], args, ", ".join(versions), (load_start, load_average()))
    for r in [*refs, *rows]:
        for kind, n in r.stats.errors.most_common():
            failures.append(f"{r.target} {r.case}: {n} x {kind}")
        failures.extend(f"{r.target} {r.case}: e.g. {s}" for s in r.stats.samples)
    if failures:
        print("\nERRORS")
        for f in failures:
            print(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
