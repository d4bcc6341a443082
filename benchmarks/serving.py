"""`wmfactory api` under load, on loopback: 48 concurrent rollout requests against the same 48 one after another,
then requests per second and p50 / p99 latency at 1, 8 and 48 concurrent clients, with the batch sizes the engine
formed; with `--soak_minutes`, a soak of mixed good and bad requests from 16 clients, with the server's memory at
its start and end.

    python benchmarks/serving.py [--steps 6] [--requests 48] [--seconds 10] [--soak_minutes 0]

The tiny model of this repository (trained for 3 steps, which does not change the cost), served by a real
`wmfactory api` process; the clients are asyncio tasks of this process, one keep-alive connection each (the soak's
are httpx clients in threads). Checks that every concurrent answer equals the sequential answer to the same
request (max abs difference, bound 1e-4). Prints JSON and a verdict (the target: 48 concurrent requests at least 3x
faster than 48 one after another; in the soak, no error for a good request, no 5xx, every bad request a 4xx, memory
within 10%, the server answering at the end)."""

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "src"))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "api"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def train(folder: str, rows: int):
    from conftest import train_args, write_dynamics_dataset
    from servers import read_rows

    from wmfactory.train.tuner import run_exp

    data = write_dynamics_dataset(Path(folder) / "data", rows=rows, steps=6, d=8)
    run_exp(train_args(os.path.join(folder, "model"), data, max_steps=3, disable_tqdm=True))
    return os.path.join(folder, "model"), read_rows(data, "dynamics")


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def batch_sizes(url: str) -> dict[int, int]:
    return {int(k): v for k, v in httpx.get(f"{url}/v1/stats").json()["batch_sizes"].items()}


def formed(before: dict[int, int], after: dict[int, int]) -> dict[str, int]:
    return {str(size): count - before.get(size, 0) for size, count in sorted(after.items())
            if count > before.get(size, 0)}


class Connection:
    """One keep-alive HTTP/1.1 connection of an asyncio client, as small as a client can be: at 48 connections
    httpx's own overhead, not the server, set the pace on 2 cores (2,300 /v1/health per s with this client,
    under 150 with 48 httpx.AsyncClient)."""

    def __init__(self, port: int):
        self.port = port

    async def open(self) -> "Connection":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def post(self, path: str, body: dict) -> tuple[int, dict]:
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next(int(line.split(":")[1]) for line in head if line.lower().startswith("content-length:"))
        return int(head[0].split()[1]), json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


def burst(port: int, bodies: list[dict], clients: int) -> tuple[float, list]:
    """All `bodies` sent by `clients` connections at once; (seconds, (status, answer) in order)."""
    async def run():
        connections = [await Connection(port).open() for _ in range(clients)]
        answers = [None] * len(bodies)

        async def client(c: int):
            for i in range(c, len(bodies), clients):
                answers[i] = await connections[c].post("/v1/rollout", bodies[i])

        start = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(clients)))
        seconds = time.perf_counter() - start
        for connection in connections:
            connection.close()
        return seconds, answers

    return asyncio.run(run())


def load(port: int, rows: list[dict], steps: int, clients: int, seconds: float) -> dict:
    """`clients` connections, each sending a rollout as soon as its last one was answered, for `seconds`."""
    url = f"http://127.0.0.1:{port}"
    latencies, failures = [], []
    before = batch_sizes(url)

    async def client(c: int, stop_at: float):
        connection = await Connection(port).open()
        i = c
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            status, _ = await connection.post("/v1/rollout", {"row": rows[i % len(rows)], "steps": steps})
            (latencies if status == 200 else failures).append(time.perf_counter() - start)
            i += clients
        connection.close()

    async def run():
        start = time.perf_counter()
        await asyncio.gather(*(client(c, start + seconds) for c in range(clients)))
        return time.perf_counter() - start

    wall = asyncio.run(run())
    return {"clients": clients, "requests": len(latencies), "failed": len(failures),
            "requests_per_s": round(len(latencies) / wall, 1), "p50_ms": round(1000 * percentile(latencies, 50), 1),
            "p99_ms": round(1000 * percentile(latencies, 99), 1), "batch_sizes": formed(before, batch_sizes(url))}


def bad_requests(row: dict) -> list[tuple[str, bytes]]:
    """(what is wrong, body) for requests the server must refuse with a 4xx."""
    wrong_dimension = {**row, "embeddings": {**row["embeddings"], "m2": [[1.0, 2.0]]}}
    path = {**row, "embeddings": {**row["embeddings"], "m2": ["/etc/passwd"]}}
    nan = json.dumps({"row": row, "steps": 3}).replace("]]", ", NaN]]", 1)
    return [("bad JSON", b'{"row": [1, 2'),
            ("unknown field", json.dumps({"row": row, "steps": 3, "stepz": 1}).encode()),
            ("steps 0", json.dumps({"row": row, "steps": 0}).encode()), ("NaN", nan.encode()),
            ("wrong dimension", json.dumps({"row": wrong_dimension, "steps": 3}).encode()),
            ("a file path", json.dumps({"row": path, "steps": 3}).encode()),
            ("too many steps", json.dumps({"row": row, "steps": 10**6}).encode())]


def soak(server, rows: list[dict], steps: int, minutes: float, clients: int = 16) -> dict:
    """Mixed requests (one in four bad) from `clients` threads for `minutes`; the server's VmRSS at start and end."""
    url = server.url
    counts = {"good": 0, "good_failed": 0, "bad": 0, "bad_not_4xx": 0, "server_errors": 0}
    lock = threading.Lock()
    memory_start = server.memory_kib()
    stop_at = time.perf_counter() + 60 * minutes
    samples = []

    def client(c: int):
        rng = random.Random(c)
        with httpx.Client(base_url=url, timeout=120) as connection:
            while time.perf_counter() < stop_at:
                row = rows[rng.randrange(len(rows))]
                if rng.random() < 0.25:
                    _, body = rng.choice(bad_requests(row))
                    answer = connection.post("/v1/rollout", content=body, headers={"Content-Type": "application/json"})
                    with lock:
                        counts["bad"] += 1
                        counts["bad_not_4xx"] += not 400 <= answer.status_code < 500
                        counts["server_errors"] += answer.status_code >= 500
                else:
                    kind = rng.choice(["rollout", "samples", "stream", "predict_next"])
                    if kind == "predict_next":
                        answer = connection.post("/v1/predict_next", json={"row": row})
                    elif kind == "stream":
                        with connection.stream("POST", "/v1/rollout", json={"row": row, "steps": steps,
                                                                            "stream": True}) as answer:
                            text = answer.read().decode()
                        ok = answer.status_code == 200 and "event: done" in text
                        answer = httpx.Response(200 if ok else 599)
                    else:
                        extra = {"num_samples": 4, "seed": c} if kind == "samples" else {}
                        answer = connection.post("/v1/rollout", json={"row": row, "steps": steps, **extra})
                    with lock:
                        counts["good"] += 1
                        counts["good_failed"] += answer.status_code != 200
                        counts["server_errors"] += answer.status_code >= 500

    def sample_memory():
        while time.perf_counter() < stop_at:
            samples.append(server.memory_kib())
            time.sleep(10)

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    memory_end = server.memory_kib()
    answering = httpx.post(f"{url}/v1/rollout", json={"row": rows[0], "steps": steps}).status_code == 200
    return {"minutes": minutes, "clients": clients, **counts, "memory_start_mib": round(memory_start / 1024, 1),
            "memory_end_mib": round(memory_end / 1024, 1),
            "memory_max_mib": round(max(samples + [memory_end]) / 1024, 1),
            "memory_growth": round(memory_end / memory_start - 1, 4), "answering_at_the_end": answering,
            "batch_sizes": {str(k): v for k, v in sorted(batch_sizes(url).items())}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load level")
    parser.add_argument("--soak_minutes", type=float, default=0.0)
    parser.add_argument("--batch_window_ms", type=float, default=5.0)
    args = parser.parse_args()
    from servers import ApiServer

    folder = tempfile.mkdtemp(prefix="wmfactory-serving-")
    model, rows = train(folder, args.requests)
    server = ApiServer("--model_name_or_path", model, "--batch_window_ms", str(args.batch_window_ms),
                       "--log_level", "warning", env={"PYTHONPATH": os.pathsep.join(
                           [os.path.join(REPO, "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p])}).wait()
    try:
        url, port = server.url, server.port
        bodies = [{"row": rows[i], "steps": args.steps} for i in range(args.requests)]
        burst(port, bodies[:8], 8)  # warm-up
        sequential, one_by_one = burst(port, bodies, 1)
        before = batch_sizes(url)
        concurrent, together = burst(port, bodies, len(bodies))
        concurrent_batches = formed(before, batch_sizes(url))
        assert all(status == 200 for status, _ in one_by_one + together)
        difference = max(float(np.abs(np.asarray(a["vectors"]) - np.asarray(b["vectors"])).max())
                         for (_, a), (_, b) in zip(one_by_one, together))
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, OMP_NUM_THREADS="
                       f"{os.environ.get('OMP_NUM_THREADS', 'unset')}",
            "steps": args.steps, "requests": args.requests,
            "sequential_s": round(sequential, 3), "concurrent_s": round(concurrent, 3),
            "speedup": round(sequential / concurrent, 2), "concurrent_batch_sizes": concurrent_batches,
            "max_abs_difference": difference,
            "load": [load(port, rows, args.steps, clients, args.seconds) for clients in (1, 8, 48)],
        }
        ok = result["speedup"] >= 3 and difference <= 1e-4
        if args.soak_minutes > 0:
            result["soak"] = soak(server, rows, args.steps, args.soak_minutes)
            s = result["soak"]
            ok = ok and s["good_failed"] == 0 and s["server_errors"] == 0 and s["bad_not_4xx"] == 0 and \
                abs(s["memory_growth"]) <= 0.10 and s["answering_at_the_end"]
    finally:
        code = server.stop()
    result["server_exit_status"] = code
    print(json.dumps(result, indent=2))
    print(f"verdict: {'PASS' if ok and code == 0 else 'FAIL'} (48 concurrent {result['speedup']}x faster than one "
          "after another; target >= 3x)")
    return 0 if ok and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
