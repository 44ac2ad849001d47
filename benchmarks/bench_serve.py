"""`nlp-pipeline serve` under load on loopback: requests/s and latency at 1, 8 and 64 concurrent clients, the effect of
micro-batching, and the server's memory over 100,000 requests.

    python benchmarks/bench_serve.py [--model PATH] [--seconds 20] [--soak 100000] [--threads 1] [--levels 1,8,64]

Model: the bundle at --model (a bundle folder or runs/<name>/), else bench_predict's: the default architecture (LSTM
300/600/2, 1-2-gram linear blend) with its head trained for one epoch on a sample of TREC-6 train (gensim's Pang & Lee
sentences without ../shared/data). Latency depends on the architecture and the text length, not on the accuracy.
Server: `python -m nlp_pipeline.cli serve --model ... --port 0 --num-threads T` in a subprocess (T = --threads, 1 by
default: the load generator needs the other core of a 2-core machine; both share the machine, and the client's CPU
time is reported beside the server's).
Load generator: this process, asyncio with raw HTTP/1.1 keep-alive connections (no client library in the way):
C clients each send POST /predict {"text": ...} with one TREC-6 test question (cycled), wait for the answer, send the
next. Per level: 2 s of warm-up, then --seconds of measurement: requests/s, latency p50/p90/p99/max (ms), errors, and
texts per forward pass (the server's /health stats). The same 64-client load with --max-batch 1 shows what batching
buys, and the levels above 1 client again with --batch-wait-ms (--wait-ms, 5) what waiting for a batch buys. Soak: --soak requests at 64 clients; the server's RSS (/proc/PID/status VmRSS) every 5,000 requests.
Writes benchmarks/results/serve.json (+ .md); --render FILE prints a results file as markdown again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, git_commit, markdown_table, save, versions

WARMUP_SECONDS = 2.0
RSS_EVERY = 5000


# --- the server ------------------------------------------------------------------------------------------------
class Server:
    def __init__(self, model: Path, threads: int, max_batch: int, batch_wait_ms: float = 0.0):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nlp_pipeline.cli", "serve", "--model", str(model), "--port", "0",
             "--num-threads", str(threads), "--max-batch", str(max_batch), "--batch-wait-ms", str(batch_wait_ms)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        for line in self.process.stderr:
            found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self.lines: list[str] = []  # what it says later (uvicorn warnings, its last line), read so the pipe never fills
                threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True).start()
                return
        raise SystemExit(f"the server did not start (exit {self.process.wait()})")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def client_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the load generator ----------------------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection sending POST /predict and reading the JSON answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> "Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def load(port: int, clients: int, texts: list[str], seconds: float | None = None, requests: int | None = None,
               on_progress=None) -> dict:
    """`clients` connections sending one text per request until `seconds` pass or `requests` are answered."""
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds if seconds else None

    async def client(number: int) -> None:
        nonlocal errors, sent
        connection = await Connection.open(port)
        try:
            while True:
                if stop_at is not None and time.perf_counter() >= stop_at:
                    return
                if requests is not None and sent >= requests:
                    return
                body = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                status, _ = await connection.request("POST", "/predict", body)
                latencies.append(time.perf_counter() - started)
                if status != 200:
                    errors += 1
                if on_progress is not None:
                    on_progress(len(latencies))
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)

    def pct(q: float) -> float:
        return round(ms[min(len(ms) - 1, int(q * len(ms)))], 2)

    return {"requests": len(ms), "seconds": round(elapsed, 2), "requests_per_second": round(len(ms) / elapsed, 1),
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(ms[-1], 2),
            "mean_ms": round(statistics.fmean(ms), 2), "errors": errors}


async def health(port: int) -> dict:
    connection = await Connection.open(port)
    try:
        return json.loads((await connection.request("GET", "/health"))[1])["stats"]
    finally:
        connection.close()


async def measure_level(server: Server, clients: int, texts: list[str], seconds: float) -> dict:
    await load(server.port, clients, texts, seconds=WARMUP_SECONDS)
    before, server_cpu, own_cpu = await health(server.port), server.cpu_seconds(), client_cpu_seconds()
    row = await load(server.port, clients, texts, seconds=seconds)
    after = await health(server.port)
    batches = after["batches"] - before["batches"]
    row.update(clients=clients, texts_per_batch=round((after["texts"] - before["texts"]) / max(batches, 1), 2),
               server_cpu_seconds=round(server.cpu_seconds() - server_cpu, 1),
               client_cpu_seconds=round(client_cpu_seconds() - own_cpu, 1), rss_mb=round(server.rss_mb(), 1))
    print(f"{clients:>3} clients: {row['requests_per_second']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
          f"{row['texts_per_batch']} texts/batch", file=sys.stderr)
    return row


async def soak(server: Server, clients: int, texts: list[str], total: int) -> dict:
    samples = [{"requests": 0, "rss_mb": round(server.rss_mb(), 1)}]

    def progress(done: int) -> None:
        if done % RSS_EVERY == 0:
            samples.append({"requests": done, "rss_mb": round(server.rss_mb(), 1)})
            print(f"soak: {done:,} requests, server RSS {samples[-1]['rss_mb']} MB", file=sys.stderr)

    row = await load(server.port, clients, texts, requests=total, on_progress=progress)
    samples.append({"requests": row["requests"], "rss_mb": round(server.rss_mb(), 1)})
    after_warmup = [s["rss_mb"] for s in samples if s["requests"] >= 2 * RSS_EVERY]
    row.update(clients=clients, rss_samples=samples, rss_start_mb=samples[0]["rss_mb"],
               rss_after_10k_mb=after_warmup[0] if after_warmup else None, rss_end_mb=samples[-1]["rss_mb"],
               rss_max_mb=max(s["rss_mb"] for s in samples),
               rss_growth_after_10k_mb=round(samples[-1]["rss_mb"] - after_warmup[0], 1) if after_warmup else None)
    return row


# --- main ------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="bundle or run folder (default: train bench_predict's)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per concurrency level")
    parser.add_argument("--levels", default="1,8,64", help="concurrent clients, comma-separated")
    parser.add_argument("--soak", type=int, default=100_000, help="requests of the memory soak (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--wait-ms", type=float, default=5.0,
                        help="also measure the levels above 1 client with this --batch-wait-ms (0: no)")
    parser.add_argument("--render", type=Path, default=None,
                        help="only print a results file (serve.json) as markdown again, measuring nothing")
    args = parser.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text(encoding="utf-8"))))
        return
    levels = [int(x) for x in args.levels.split(",")]

    from bench_predict import load_texts, train_bundle

    train, labels, test, source = load_texts()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            step = max(1, len(train) // 2000)
            model, _ = train_bundle(train[::step], labels[::step], Path(tmp), args.threads)
        from nlp_pipeline.export.bundle import Classifier

        arch = Classifier.load(model, num_threads=1).config["arch"]
        rows, unbatched = [], None
        server = Server(model, args.threads, max_batch=64)
        try:
            idle_rss = server.rss_mb()
            for clients in levels:
                rows.append(asyncio.run(measure_level(server, clients, test, args.seconds)))
            soaked = asyncio.run(soak(server, max(levels), test, args.soak)) if args.soak else None
        finally:
            server.stop()
        if max(levels) > 1:
            server = Server(model, args.threads, max_batch=1)
            try:
                unbatched = asyncio.run(measure_level(server, max(levels), test, args.seconds))
            finally:
                server.stop()
        waited = []
        if args.wait_ms > 0:
            server = Server(model, args.threads, max_batch=64, batch_wait_ms=args.wait_ms)
            try:
                waited = [asyncio.run(measure_level(server, clients, test, args.seconds)) for clients in levels if clients > 1]
            finally:
                server.stop()

    payload = {"load_average_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
               "model": str(args.model) if args.model else f"bench_predict's bundle ({source})",
               "arch": {k: arch.get(k) for k in ("rnn_type", "embedding_dim", "hidden_dim", "num_layers", "vocab_size")},
               "texts": f"{source} test texts, one per request", "server_threads": args.threads,
               "seconds_per_level": args.seconds, "idle_rss_mb": round(idle_rss, 1), "levels": rows,
               "unbatched_max_batch_1": unbatched, "batch_wait_ms": args.wait_ms, "batch_wait_levels": waited,
               "soak": soaked, "commit": git_commit(), "versions": versions("torch", "fastapi", "uvicorn", "starlette")}
    save("serve", payload, render(payload))


def render(payload: dict) -> str:
    """The results as markdown. Requests per server CPU-second: what the server did with the CPU it got, which
    depends less on what else the machine runs than requests/s does."""
    def row(r: dict, max_batch: int, wait: float) -> list:
        per_cpu = round(r["requests"] / r["server_cpu_seconds"]) if r["server_cpu_seconds"] else "-"
        return [r["clients"], max_batch, wait, r["requests_per_second"], per_cpu, r["p50_ms"], r["p90_ms"], r["p99_ms"],
                r["texts_per_batch"], r["errors"], r["server_cpu_seconds"], r["client_cpu_seconds"]]

    rows = [row(r, 64, 0) for r in payload["levels"]]
    if payload.get("unbatched_max_batch_1"):
        rows.append(row(payload["unbatched_max_batch_1"], 1, 0))
    rows += [row(r, 64, payload["batch_wait_ms"]) for r in payload.get("batch_wait_levels", [])]
    table = markdown_table(["clients", "max batch", "batch wait ms", "requests/s", "requests per server CPU-s", "p50 ms",
                            "p90 ms", "p99 ms", "texts per forward pass", "errors", "server CPU s", "client CPU s"], rows)
    arch = payload["arch"]
    lines = [f"# nlp-pipeline serve on loopback ({payload.get('date', time.strftime('%Y-%m-%d'))[:10]}, commit "
             f"{payload['commit']})", "",
             f"Bundle: {payload['model']}, {arch.get('rnn_type')} {arch.get('embedding_dim')}/{arch.get('hidden_dim')}"
             f"x{arch.get('num_layers')}; {payload['texts']}; server with {payload['server_threads']} torch thread(s); "
             f"{payload['seconds_per_level']:g} s per row after {WARMUP_SECONDS:g} s of warm-up; client and server share "
             f"the machine (load average at the end: {', '.join(map(str, payload['load_average_1_5_15_at_end']))}).",
             "", table]
    soaked = payload.get("soak")
    if soaked:
        lines += ["", f"Memory over {soaked['requests']:,} requests at {soaked['clients']} clients "
                      f"({soaked['requests_per_second']} req/s, {soaked['errors']} errors): server RSS "
                      f"{soaked['rss_start_mb']} MB at the start, {soaked['rss_after_10k_mb']} MB after 10,000 requests, "
                      f"{soaked['rss_end_mb']} MB at the end (max {soaked['rss_max_mb']} MB; growth after 10,000: "
                      f"{soaked['rss_growth_after_10k_mb']} MB).", "",
                  markdown_table(["requests", "RSS MB"], [[s["requests"], s["rss_mb"]] for s in soaked["rss_samples"]])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
