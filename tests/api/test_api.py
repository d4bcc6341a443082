"""`wmfactory api`: the real server on a free loopback port, spoken to over HTTP (httpx). Two tiny trained world
models are each served once for the module: one stream with a mixture head (with an API key and a bank), and a
state stream with an action condition stream (with tight limits, to check 413, 429 and 504)."""

import base64
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from conftest import train_args, write_controlled_dataset, write_dynamics_dataset
from servers import ApiServer, as_arrays, read_rows

from wmfactory import Client, WorldModel
from wmfactory.cli import main as cli_main
from wmfactory.extras.errors import DataError
from wmfactory.train.tuner import run_exp

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The two models trained, a bank of five items, and the three servers started (in parallel)."""
    tmp = tmp_path_factory.mktemp("api")
    dynamics = write_dynamics_dataset(tmp / "data", rows=16, steps=6)
    run_exp(train_args(tmp / "dynamics", dynamics, max_steps=3, prediction_head_type="mixture",
                       calibrate_temperature=False))
    control = write_controlled_dataset(tmp / "control_data", rows=12)
    run_exp(train_args(tmp / "control", control, dataset="control", condition_streams="a", max_steps=3))
    bank = tmp / "bank"
    (bank / "vectors").mkdir(parents=True)
    bank_vectors = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    with open(bank / "items.jsonl", "w") as f:
        for i, vector in enumerate(bank_vectors):
            np.save(bank / "vectors" / f"item{i}.npy", vector[None])
            f.write(json.dumps({"id": f"item{i}", "file": f"vectors/item{i}.npy", "text": f"sentence {i}"}) + "\n")
    servers = {
        "main": ApiServer("--model_name_or_path", str(tmp / "dynamics"), "--bank", str(bank), "--max_samples", "8",
                          "--batch_window_ms", "50", env={"API_KEY": KEY}),
        "control": ApiServer("--model_name_or_path", str(tmp / "control"), "--max_queue", "1", "--max_batch_size",
                             "1", "--request_timeout", "1.5", "--max_body_mb", "0.05"),
    }
    try:
        for server in servers.values():
            server.wait()
        yield {"tmp": tmp, "dynamics": dynamics, "control": control, "bank": bank_vectors, "servers": servers,
               "rows": read_rows(dynamics, "dynamics"), "control_rows": read_rows(control, "control"),
               "model": WorldModel.from_pretrained(str(tmp / "dynamics")),
               "control_model": WorldModel.from_pretrained(str(tmp / "control"))}
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def main(trained):
    return httpx.Client(base_url=trained["servers"]["main"].url, headers=AUTH, timeout=60)


def assert_error(response, status: int, *words: str):
    """The status, OpenAI's error shape, the words in the message, and no traceback."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and all(isinstance(v, str) for v in error.values())
    for word in words:
        assert word in error["message"], error["message"]
    assert "Traceback" not in response.text and "File \"" not in response.text
    return error


# ---- health, card, key ------------------------------------------------------------------------------------------
def test_health_needs_no_key_the_rest_needs_the_right_one(trained):
    url = trained["servers"]["main"].url
    assert httpx.get(f"{url}/v1/health").json() == {"status": "ok"}
    assert_error(httpx.get(f"{url}/v1/models"), 401, "API key")
    assert_error(httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.post(f"{url}/v1/rollout", json={}, headers={"Authorization": KEY}), 401)  # no scheme
    card = httpx.get(f"{url}/v1/models", headers=AUTH).json()["data"][0]
    assert card["streams"] == {"m": {"kind": "predicted", "dim": 4}}
    assert card["head"] == "mixture" and card["context_length"] == 2048 and card["normalisation"] == "standard"
    assert card["bank"] == {"items": 5, "dim": 4} and card["wmfactory_version"] == "0.2.0"
    control = httpx.get(f"{trained['servers']['control'].url}/v1/models").json()["data"][0]
    assert control["streams"] == {"a": {"kind": "condition", "dim": 3}, "s": {"kind": "predicted", "dim": 2}}


def test_a_non_loopback_host_needs_a_key(trained, capsys, monkeypatch):
    monkeypatch.delenv("API_KEY", raising=False)
    model = str(trained["tmp"] / "dynamics")
    assert cli_main(["api", "--model_name_or_path", model, "--host", "0.0.0.0"]) == 1
    assert "`host` 0.0.0.0 is not a loopback address: set `api_key`" in capsys.readouterr().err
    from wmfactory.hparams import get_api_args

    assert get_api_args(["--model_name_or_path", model, "--host", "0.0.0.0", "--api_key", "k"]).api.api_key == "k"
    assert get_api_args(["--model_name_or_path", model, "--host", "10.0.0.1",
                         "--allow_unauthenticated"]).api.api_key is None
    monkeypatch.setenv("API_KEY", "from-env")
    assert get_api_args(["--model_name_or_path", model, "--host", "::"]).api.api_key == "from-env"


# ---- rollout ------------------------------------------------------------------------------------------------------
def test_rollout_equals_the_in_process_rollout(trained, main):
    model, rows = trained["model"], trained["rows"]
    for arguments in ({"steps": 6}, {"steps": 4, "context_groups": 2},
                      {"steps": 5, "num_samples": 3, "seed": 7, "temperature": 0.5}):
        answer = main.post("/v1/rollout", json={"row": rows[1], **arguments})
        assert answer.status_code == 200, answer.text
        expected = model.rollout(as_arrays(rows[1]), **arguments)
        got = np.asarray(answer.json()["vectors"])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # the vectors as base64 give the same rollout
    encoded = {**rows[1], "embeddings": {key: [{"b64": base64.b64encode(np.asarray(v, "<f4").tobytes()).decode(),
                                                "dtype": "float32", "shape": [1, 4]} for v in values]
                                         for key, values in rows[1]["embeddings"].items()}}
    answer = main.post("/v1/rollout", json={"row": encoded, "steps": 6})
    np.testing.assert_allclose(answer.json()["vectors"], model.rollout(as_arrays(rows[1]), steps=6), atol=1e-4)


def test_concurrent_rollouts_are_batched_each_equal_to_its_own_and_a_bad_one_fails_alone(trained, main):
    """Rollouts that arrive together are stepped as one batch whatever their steps; each result is its own rollout."""
    model, rows = trained["model"], trained["rows"]
    bad = {**rows[0], "embeddings": {**rows[0]["embeddings"], "m2": [[1.0, 2.0, 3.0]]}}  # dimension 3, not 4
    bodies = [{"row": rows[i], "steps": 3 + i} for i in range(8)] + [{"row": bad, "steps": 6}]
    bodies += [{"row": rows[i], "steps": 4, "num_samples": 2, "seed": i} for i in range(3)]
    before = main.get("/v1/stats").json()["batch_sizes"]
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: main.post("/v1/rollout", json=body), bodies))
    for body, answer in zip(bodies, answers):
        if body["row"] is bad:
            assert_error(answer, 422, "dimension")
            continue
        assert answer.status_code == 200, answer.text
        expected = model.rollout(as_arrays(body["row"]), **{k: v for k, v in body.items() if k != "row"})
        assert np.shape(answer.json()["vectors"]) == expected.shape
        np.testing.assert_allclose(answer.json()["vectors"], expected, rtol=1e-4, atol=1e-4)
    after = main.get("/v1/stats").json()["batch_sizes"]
    formed = {int(size): count - before.get(size, 0) for size, count in after.items() if count > before.get(size, 0)}
    assert max(formed) >= 2, formed  # at least one batch of several rows (a 50 ms window for 12 requests)
    assert sum(size * count for size, count in formed.items()) == len(bodies) - 1  # each good one in one batch


def test_a_long_rollout_does_not_hold_a_short_one_that_arrives_after_it(trained, main):
    model, rows = trained["model"], trained["rows"]
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(main.post, "/v1/rollout", json={"row": rows[0], "steps": 1500})
        time.sleep(0.3)
        quick = main.post("/v1/rollout", json={"row": rows[1], "steps": 3})
        assert not slow.done()  # the short one was stepped beside the long one, not after it
        assert slow.result().status_code == 200 and len(slow.result().json()["vectors"]) == 1500
    np.testing.assert_allclose(quick.json()["vectors"], model.rollout(as_arrays(rows[1]), steps=3), atol=1e-4)
    np.testing.assert_allclose(slow.result().json()["vectors"][:5], model.rollout(as_arrays(rows[0]), steps=5),
                               atol=1e-4)


BAD_ROLLOUTS = [  # (body, status, words of the message)
    (b'{"row": {"messages": [', 400, ["not valid JSON", "line 1"]),
    (b'[1, 2]', 400, ["JSON object"]),
    ({"steps": "three"}, 422, ["`steps`", "valid integer"]),
    ({"steps": 0}, 422, ["`steps`", "greater than or equal to 1"]),
    ({"steps": 5000}, 422, ["needs", "positions; the model has 2048"]),
    ({"steps": 3, "num_samples": 9}, 422, ["`num_samples` 9", "allows (8)"]),
    ({"steps": 3, "stepz": 1}, 422, ["unknown field `stepz`"]),
    ({"steps": 3, "temperature": -1.0}, 422, ["`temperature`"]),
    ({"steps": 3, "seed": True}, 422, ["`seed`"]),
]


@pytest.mark.parametrize("body,status,words", BAD_ROLLOUTS)
def test_bad_rollout_requests_get_one_clear_error(trained, main, body, status, words):
    if isinstance(body, dict):
        body = json.dumps({"row": trained["rows"][0], **body}).encode()
    assert_error(main.post("/v1/rollout", content=body, headers={"Content-Type": "application/json"}), status, *words)


def test_bad_vectors_in_the_row_are_refused_and_no_file_is_read(trained, main, tmp_path):
    row = trained["rows"][0]

    def with_m2(entry):
        return {**row, "embeddings": {**row["embeddings"], "m2": [entry]}}

    cases = [
        (json.dumps({"row": with_m2([1.0, 2.0, 3.0]), "steps": 2}), ["dimension"]),
        (json.dumps({"row": with_m2([1.0, 2.0, 3.0, 4.0]), "steps": 2}).replace("4.0]", "NaN]"), ["NaN or infinity"]),
        (json.dumps({"row": with_m2([1.0, 2.0, 3.0, 4.0]), "steps": 2}).replace("4.0]", "1e999]"), ["NaN or infinity"]),
        (json.dumps({"row": with_m2([1.0, None, 3.0, 4.0]), "steps": 2}), ["`row.embeddings.m2[0]` holds NaN or "
                                                                          "infinity (null: missing entries need"]),
        (json.dumps({"row": with_m2({"b64": "AAAA", "dtype": "float32", "shape": [1, 4]}), "steps": 2}),
         ["3 bytes do not hold shape [1, 4]"]),
        (json.dumps({"row": with_m2({"b64": "AAAAAAAAAAAAAAAAAAAAAA==", "dtype": "int8", "shape": [16]}),
                     "steps": 2}), ["dtype` must be one of float16, float32, float64"]),
        (json.dumps({"row": with_m2([[1.0, 2.0], [3.0]]), "steps": 2}), ["rectangular"]),
        (json.dumps({"row": {**row, "embeddings": {}}, "steps": 2}), ["`row.embeddings`"]),
        (json.dumps({"row": {"messages": row["messages"], "embeddings": {**row["embeddings"], "m9": [[0.0] * 4]}},
                     "steps": 2}), ["m9"]),  # an entry no placeholder references
    ]
    for body, words in cases:
        assert_error(main.post("/v1/rollout", content=body), 422, *words)
    # a path is refused before anything could open it: the file exists and holds valid vectors
    path = tmp_path / "secret.npy"
    np.save(path, np.ones((1, 4), dtype=np.float32))
    for entry in (str(path), "m2.npy"):
        assert_error(main.post("/v1/rollout", json={"row": with_m2(entry), "steps": 2}), 422,
                     "`row.embeddings.m2[0]` is a string", "never reads files")
    assert_error(main.post("/v1/rollout", json={"steps": 2}), 422, "`row` is required")


def test_unknown_routes_and_methods_have_the_error_shape(main):
    assert_error(main.get("/v1/nothing"), 404, "/v1/nothing")
    assert_error(main.get("/v1/rollout"), 405)


# ---- predict_next, nearest, the client ---------------------------------------------------------------------------
def test_predict_next_equals_the_in_process_predictions(trained, main):
    model, row = trained["model"], trained["rows"][2]
    answer = main.post("/v1/predict_next", json={"row": row, "num_samples": 2, "seed": 3})
    assert answer.status_code == 200, answer.text
    expected = model.predict_next(as_arrays(row), num_samples=2, seed=3)
    groups = answer.json()["groups"]
    assert [g["key"] for g in groups] == [g.key for g in expected] == ["m2", "m3", "m4", "m5", "m6"]
    for got, want in zip(groups, expected):
        np.testing.assert_allclose(got["predicted"], want.predicted, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(got["target"], want.target, atol=1e-6)
        np.testing.assert_allclose(got["samples"], want.samples, rtol=1e-4, atol=1e-4)
    assert_error(main.post("/v1/predict_next", json={"row": row, "steps": 2}), 422, "unknown field `steps`")


def test_nearest_finds_the_bank_items(trained, main):
    bank = trained["bank"]
    queries = np.stack([bank[2] * 3.0, -bank[0], bank[4] + 0.01])
    answer = main.post("/v1/nearest", json={"vectors": queries.tolist(), "k": 2})
    assert answer.status_code == 200, answer.text
    neighbours = answer.json()["neighbours"]
    cosine = (queries @ bank.T) / np.outer(np.linalg.norm(queries, axis=1), np.linalg.norm(bank, axis=1))
    for found, scores in zip(neighbours, cosine):
        assert [item["id"] for item in found] == [f"item{i}" for i in np.argsort(-scores)[:2]]
        np.testing.assert_allclose([item["score"] for item in found], np.sort(scores)[::-1][:2], atol=1e-5)
    assert neighbours[0][0]["text"] == "sentence 2"
    assert_error(main.post("/v1/nearest", json={"vectors": [[1.0, 2.0]]}), 422, "dimension 2", "bank's is 4")
    assert_error(main.post("/v1/nearest", json={"vectors": [[0.0] * 4]}), 422, "zero vector")
    assert_error(httpx.post(f"{trained['servers']['control'].url}/v1/nearest", json={"vectors": [[1.0]]}), 400,
                 "no bank")


def test_the_python_client_reads_like_a_local_world_model(trained):
    model, rows = trained["model"], trained["rows"]
    with Client(trained["servers"]["main"].url, api_key=KEY) as client:
        assert client.health() and client.model_card()["streams"]["m"]["dim"] == 4
        rolled = client.rollout(as_arrays(rows[3]), steps=6, num_samples=2, seed=1)  # numpy rows go as base64
        assert isinstance(rolled, np.ndarray) and rolled.shape == (2, 6, 4)
        np.testing.assert_allclose(rolled, model.rollout(as_arrays(rows[3]), 6, num_samples=2, seed=1), atol=1e-4)
        streamed = [vector for _, vector in client.stream_rollout(rows[3], steps=4)]
        np.testing.assert_allclose(streamed, model.rollout(as_arrays(rows[3]), 4), atol=1e-4)
        groups = client.predict_next(rows[3])
        np.testing.assert_allclose(groups[0].predicted, model.predict_next(as_arrays(rows[3]))[0].predicted,
                                   atol=1e-4)
        assert client.nearest(trained["bank"][1:2], k=1)[0][0]["id"] == "item1"
        with pytest.raises(DataError, match="422.*`steps`"):
            client.rollout(rows[3], steps=0)
        with pytest.raises(DataError, match="names a file"):
            client.rollout({**rows[3], "embeddings": {"m1": ["a.npy"]}}, steps=1)
    with Client(trained["servers"]["main"].url, api_key="wrong") as client, pytest.raises(DataError, match="401"):
        client.rollout(rows[3], steps=1)


# ---- conditions and plan -----------------------------------------------------------------------------------------
def test_rollout_under_given_actions_equals_the_in_process_one(trained):
    model, row = trained["control_model"], trained["control_rows"][0]
    actions = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    url = trained["servers"]["control"].url
    answer = httpx.post(f"{url}/v1/rollout", json={"row": row, "steps": 3, "context_groups": 4,
                                                   "conditions": {"a": actions.tolist()}})
    assert answer.status_code == 200, answer.text
    expected = model.rollout(as_arrays(row), steps=3, context_groups=4, conditions={"a": actions})
    np.testing.assert_allclose(answer.json()["vectors"], expected, rtol=1e-4, atol=1e-4)
    assert_error(httpx.post(f"{url}/v1/rollout", json={"row": row, "steps": 3, "context_groups": 4,
                                                       "conditions": {"a": [[1.0, 2.0]]}}), 422, "shape [k, 3]")
    assert_error(httpx.post(f"{url}/v1/rollout", content=json.dumps({"row": row, "steps": 3, "conditions": {
        "a": [[1.0, 2.0, float("inf")]]}})), 422, "`conditions.a` holds NaN or infinity")
    assert_error(httpx.post(f"{url}/v1/rollout", json={"row": row, "steps": 3, "context_groups": 4}), 422,
                 "condition vectors of stream 'a'")


PLAN = {"horizon": 3, "goal": [0.5, -0.5], "candidates": 16, "iterations": 2, "elites": 4, "seed": 0}


def test_plan_equals_the_in_process_plan(trained):
    model, row = trained["control_model"], trained["control_rows"][0]
    url = trained["servers"]["control"].url
    answer = httpx.post(f"{url}/v1/plan", json={"row": row, **PLAN, "low": -2.0, "high": [2.0, 2.0, 2.0]},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    expected = model.plan(as_arrays(row), **{**PLAN, "goal": np.asarray(PLAN["goal"], np.float32)}, low=-2.0,
                          high=np.full(3, 2.0, np.float32))
    got = answer.json()
    np.testing.assert_allclose(got["actions"], expected.actions, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["states"], expected.states, rtol=1e-4, atol=1e-4)
    assert got["cost"] == pytest.approx(float(expected.cost), rel=1e-4, abs=1e-5)
    assert len(got["costs"]) == 2
    with Client(url) as client:
        planned = client.plan(row, **{**PLAN, "goal": np.asarray(PLAN["goal"])}, low=-2.0, high=2.0)
        assert planned.actions.shape == (3, 3) and planned.costs.shape == (2,)
    assert_error(httpx.post(f"{url}/v1/plan", json={"row": row, **PLAN, "cost": "lambda s: 0"}), 422,
                 "unknown field `cost`")
    assert_error(httpx.post(f"{url}/v1/plan", json={"row": row, **PLAN, "goal": [1.0, 2.0, 3.0]}), 422)
    assert_error(httpx.post(f"{url}/v1/plan", json={"row": row, **PLAN, "method": "random"}), 422, "`method`")


# ---- limits ------------------------------------------------------------------------------------------------------
def b64(array) -> dict:
    array = np.asarray(array, "<f4")
    return {"b64": base64.b64encode(array.tobytes()).decode(), "dtype": "float32", "shape": list(array.shape)}


def test_bodies_over_the_limit_get_413_by_header_or_by_what_arrives(trained):
    url, row = trained["servers"]["control"].url, trained["control_rows"][0]
    small = {"row": row, "steps": 1, "conditions": {"a": [[0.0, 0.0, 0.0]]}}
    assert httpx.post(f"{url}/v1/rollout", json=small).status_code == 200
    big = json.dumps({**small, "conditions": {"a": np.zeros((5000, 3)).tolist()}}).encode()
    assert len(big) > 0.05 * 2**20
    assert_error(httpx.post(f"{url}/v1/rollout", content=big), 413, "larger than", "52428 bytes")

    def chunks():  # no Content-Length: the server counts what arrives
        for start in range(0, len(big), 4096):
            yield big[start: start + 4096]

    answer = httpx.post(f"{url}/v1/rollout", content=chunks())
    assert answer.request.headers.get("transfer-encoding") == "chunked"
    assert_error(answer, 413, "larger than")


def test_a_full_queue_gets_429_with_retry_after_and_a_slow_request_504(trained):
    url, row = trained["servers"]["control"].url, trained["control_rows"][0]
    slow_body = {"row": row, "steps": 950, "conditions": {"a": b64(np.zeros((950, 3)))}}  # about 2.5 s
    quick_body = {"row": row, "steps": 1, "conditions": {"a": [[0.0, 0.0, 0.0]]}}
    with ThreadPoolExecutor(4) as pool:
        slow = pool.submit(httpx.post, f"{url}/v1/rollout", json=slow_body, timeout=30)
        time.sleep(0.5)  # the worker holds the slow one; one more waits in the queue (max_queue 1), others refused
        quick = [pool.submit(httpx.post, f"{url}/v1/rollout", json=quick_body, timeout=30) for _ in range(3)]
        answers = [future.result() for future in quick]
        assert_error(slow.result(), 504, "longer than the server's limit of 1.5 s")
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(refused) >= 2, [a.status_code for a in answers]
    for answer in refused:
        assert_error(answer, 429, "busy")
        assert int(answer.headers["Retry-After"]) >= 1
    assert httpx.get(f"{url}/v1/health").status_code == 200


# ---- streaming, disconnects, shutdown ----------------------------------------------------------------------------
def sse_events(response):
    event = None
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            yield event, json.loads(line[5:])


def test_a_streamed_rollout_sends_each_step_as_it_is_made(trained, main):
    model, row = trained["model"], trained["rows"][4]
    with main.stream("POST", "/v1/rollout", json={"row": row, "steps": 6, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    assert [kind for kind, _ in events] == ["vector"] * 6 + ["done"]
    assert [data["step"] for _, data in events[:6]] == [1, 2, 3, 4, 5, 6] and events[6][1] == {"steps": 6}
    np.testing.assert_allclose([data["vector"] for _, data in events[:6]], model.rollout(as_arrays(row), 6),
                               rtol=1e-4, atol=1e-4)
    # a problem found before the first vector is an ordinary error response
    assert_error(main.post("/v1/rollout", json={"row": row, "steps": 5000, "stream": True}), 422, "positions")


def test_a_client_that_disconnects_mid_stream_leaves_the_server_working(trained, main):
    row = trained["rows"][5]
    with main.stream("POST", "/v1/rollout", json={"row": row, "steps": 1900, "stream": True}) as response:
        events = sse_events(response)
        assert next(events)[0] == "vector"
    # the connection is closed: the engine stops that rollout at its next step, and answers the next request
    answer = main.post("/v1/rollout", json={"row": row, "steps": 2})
    assert answer.status_code == 200 and len(answer.json()["vectors"]) == 2
    assert main.get("/v1/stats").json()["stopped_early"] == 1  # before its 1900 steps
    assert main.get("/v1/health").status_code == 200


def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(trained, main):
    server, row = trained["servers"]["main"], trained["rows"][6]
    result = {}
    thread = threading.Thread(target=lambda: result.update(answer=main.post("/v1/rollout",
                                                                            json={"row": row, "steps": 1000})))
    thread.start()
    time.sleep(0.5)
    os.kill(server.process.pid, signal.SIGTERM)
    thread.join(60)
    assert result["answer"].status_code == 200 and len(result["answer"].json()["vectors"]) == 1000
    assert server.process.wait(60) == 0
    log = server.log()
    assert "POST /v1/rollout 200" in log and "GET /v1/models 401" in log and "Traceback" not in log
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v1/health", timeout=2)
