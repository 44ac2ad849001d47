"""`nlp-pipeline serve`: a real server in a subprocess on 127.0.0.1 (a free port), spoken to over real HTTP.

Predictions equal the Python API's, one text or many, in order, also for concurrent requests that share batches;
/health, /info and the OpenAPI schema; every bad request (malformed JSON, empty list, non-string items, huge bodies,
wrong content type, unicode junk, raw garbage on the socket) gets its 400/413/415 JSON error and the server keeps
answering; the CLI's one-line errors (missing model folder, port in use, missing extra). The micro-batcher's
batching and failure isolation are also checked in-process, where the order of events is fixed.
"""

import asyncio
import http.client
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the serve extra (fastapi, uvicorn) is not installed: pip install -e '.[serve]'")

from nlp_pipeline.cli import main  # noqa: E402
from nlp_pipeline.export.bundle import Classifier, save_bundle  # noqa: E402
from nlp_pipeline.core.errors import ConfigError  # noqa: E402
from nlp_pipeline.serve import Busy, MicroBatcher, RequestError, ServeLimits, model_card, parse_predict_body  # noqa: E402

MAX_BYTES, MAX_TEXTS, MAX_BATCH = 20_000, 50, 8
STARTUP_SECONDS = 120  # the subprocess imports torch and FastAPI; a loaded CI machine is slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from test_bundle import make_tiny_result

    return save_bundle(make_tiny_result()[0], tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def classifier(bundle) -> Classifier:
    return Classifier.load(bundle, num_threads=1)


class Server:
    """`nlp-pipeline serve` in a subprocess; .request() speaks HTTP/1.1 to it."""

    def __init__(self, args: list[str]):
        self.process = subprocess.Popen([sys.executable, "-m", "nlp_pipeline.cli", "serve", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.port = self._wait_for_port()

    def _wait_for_port(self) -> int:
        deadline, seen = time.monotonic() + STARTUP_SECONDS, []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stderr], [], [], 1.0)
            if ready:
                line = self.process.stderr.readline()
                seen.append(line)
                found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
                if found:
                    return int(found.group(1))
            if self.process.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the server did not start: {''.join(seen)}")

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    def post(self, payload, content_type: str = "application/json") -> tuple[int, dict]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        status, _, data = self.request("POST", "/predict", body, {"Content-Type": content_type})
        return status, json.loads(data)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr_tail = self.process.stderr.read()
        self.process.stdout.close()
        self.process.stderr.close()
        return self.process.returncode


@pytest.fixture(scope="module")
def server(bundle):
    running = Server(["--model", str(bundle), "--port", "0", "--max-batch", str(MAX_BATCH), "--max-request-bytes",
                      str(MAX_BYTES), "--max-texts", str(MAX_TEXTS), "--batch-wait-ms", "200", "--num-threads", "1"])
    yield running
    assert running.stop() == 0  # SIGTERM: a clean shutdown, not a crash
    assert running.stderr_tail.splitlines()[-1].startswith("stopped (SIGTERM); answered ")
    assert "Traceback" not in running.stderr_tail  # the raw garbage above only gave uvicorn's one-line warnings


def expected(classifier: Classifier, texts: list[str]) -> list[dict]:
    return classifier.predict(texts)


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert g["probabilities"] == pytest.approx(w["probabilities"], abs=1e-5)


# --- answers ---------------------------------------------------------------------------------------------------

def test_one_text_and_many_get_the_python_apis_answers(server, classifier):
    status, one = server.post({"text": "a wonderful film"})
    assert status == 200 and list(one) == ["predictions"]
    assert_same(one["predictions"], expected(classifier, ["a wonderful film"]))
    texts = ["i hated it", "great fun for all", "", "a joy to watch", "boring mess"]
    status, many = server.post({"texts": texts})
    assert status == 200
    assert_same(many["predictions"], expected(classifier, texts))
    assert set(many["predictions"][0]) == {"label", "probabilities"}
    assert sum(many["predictions"][0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_unicode_junk_gets_answers(server, classifier):
    junk = ["\ud83d broken emoji half", "\x00\x01\x1f control", "\u202e\u200f right-to-left", "🎬🍿 GREAT!!! 🎉",
            "e\u0301\u0301\u0301 combining", "\ufeffbom", "Это ужасный фильм", "映画は素晴らしい", "\U0010ffff", " \n\t "]
    body = json.dumps({"texts": junk}).encode()  # ASCII escapes: the lone surrogate travels as \ud83d
    status, answer = server.post(body)
    assert status == 200
    assert_same(answer["predictions"], expected(classifier, junk))
    status, answer = server.post(json.dumps({"text": "caf\u00e9 " * 2000}, ensure_ascii=False).encode("utf-8"))
    assert status == 200 and len(answer["predictions"]) == 1


def test_concurrent_requests_share_batches_and_keep_their_order(server, classifier):
    before = json.loads(server.request("GET", "/health")[2])["stats"]
    texts = [f"{word} film number {i}" for i, word in enumerate(["wonderful", "dull", "great", "boring"] * 6)]
    results: dict[int, tuple[int, dict]] = {}
    barrier = threading.Barrier(len(texts))

    def client(i: int) -> None:
        barrier.wait()
        payload = {"texts": [texts[i], texts[i].upper()]} if i % 3 == 0 else {"text": texts[i]}
        results[i] = server.post(payload)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(results) == list(range(len(texts)))
    for i, (status, answer) in results.items():
        assert status == 200
        sent = [texts[i], texts[i].upper()] if i % 3 == 0 else [texts[i]]
        assert_same(answer["predictions"], expected(classifier, sent))
    after = json.loads(server.request("GET", "/health")[2])["stats"]
    requests = after["requests"] - before["requests"]
    assert requests == len(texts) and after["texts"] - before["texts"] == len(texts) + 8
    assert after["batches"] - before["batches"] < requests  # some requests shared a forward pass


def test_health_info_and_openapi(server, bundle):
    status, _, body = server.request("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    info = json.loads(server.request("GET", "/info")[2])
    assert info["labels"] == ["neg", "pos"] and info["target_type"] == "class"
    assert info["model"]["path"] == str(bundle) and info["model"]["encoder"]["rnn_type"] == "lstm"
    assert {"validation", "test"} <= set(info["model"]["metrics"])
    assert {"nlp_pipeline", "python", "torch", "fastapi", "uvicorn"} <= set(info["versions"])
    assert info["limits"]["max_request_bytes"] == MAX_BYTES and info["limits"]["max_batch"] == MAX_BATCH
    schema = json.loads(server.request("GET", "/openapi.json")[2])
    assert schema["openapi"].startswith("3.") and {"/predict", "/health", "/info"} <= set(schema["paths"])
    body_schema = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema["oneOf"] == [{"required": ["text"]}, {"required": ["texts"]}]
    assert body_schema["properties"]["texts"]["maxItems"] == MAX_TEXTS and body_schema["additionalProperties"] is False
    assert {"400", "413", "415"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    status, headers, page = server.request("GET", "/docs")
    assert status == 200 and b"openapi.json" in page


# --- bad requests ------------------------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("malformed JSON", b'{"texts": ["a", ', "application/json", 400, "not valid JSON"),
    ("empty body", b"", "application/json", 400, "not valid JSON"),
    ("empty list", b'{"texts": []}', "application/json", 400, '"texts" is empty'),
    ("non-string item", b'{"texts": ["a", 3]}', "application/json", 400, "texts[1] is a number, not a string"),
    ("null item", b'{"texts": ["a", null]}', "application/json", 400, "texts[1] is null, not a string"),
    ("nested item", b'{"texts": [["a"]]}', "application/json", 400, "texts[0] is an array, not a string"),
    ("null text", b'{"text": null}', "application/json", 400, '"text" is null, not a string'),
    ("texts not a list", b'{"texts": "a"}', "application/json", 400, '"texts" is a string, not a list'),
    ("not an object", b'["a", "b"]', "application/json", 400, "the body is an array, not a JSON object"),
    ("unknown field", b'{"texts": ["a"], "extra": 1}', "application/json", 400, "unknown field 'extra'"),
    ("both fields", b'{"text": "a", "texts": ["b"]}', "application/json", 400, 'exactly one of "text" and "texts"'),
    ("neither field", b"{}", "application/json", 400, 'exactly one of "text" and "texts"'),
    ("deep nesting", b"[" * 10_000, "application/json", 400, "not valid JSON"),
    ("huge integer", b'{"text": "a", "n": ' + b"9" * 5000 + b"}", "application/json", 400, "not valid JSON"),
    ("not UTF-8", b'{"text": "caf\xe9"}', "application/json", 400, "not UTF-8"),
    ("too many texts", json.dumps({"texts": ["a"] * (MAX_TEXTS + 1)}).encode(), "application/json", 413,
     f"at most {MAX_TEXTS}"),
    ("huge text", json.dumps({"text": "x" * (MAX_BYTES + 1)}).encode(), "application/json", 413, "at most 20,000"),
    ("wrong content type", b'{"text": "a"}', "text/plain", 415, "must be JSON: got Content-Type 'text/plain'"),
    ("form content type", b"text=a", "application/x-www-form-urlencoded", 415, "must be JSON"),
]


@pytest.mark.parametrize("body, content_type, status, message", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_a_json_error_and_the_server_keeps_answering(server, body, content_type, status, message):
    got, answer = server.post(body, content_type)
    assert (got, list(answer)) == (status, ["error"])
    assert message in answer["error"]
    assert server.request("GET", "/health")[0] == 200


def test_no_content_type_streamed_bodies_wrong_paths_and_raw_garbage(server):
    status, _, body = server.request("POST", "/predict", b'{"text": "a"}', {"Content-Type": ""})
    assert status == 415 and b"no Content-Type" in body

    def chunks():  # no Content-Length: the limit is found while reading
        for _ in range(MAX_BYTES // 1000 + 2):
            yield b'{"text": "' + b"y" * 1000 if _ == 0 else b"y" * 1000

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/predict", body=chunks(), headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and b"passed 20,000 bytes" in response.read()
    connection.close()
    for method, path, code in (("GET", "/nothing", 404), ("GET", "/predict", 405), ("DELETE", "/info", 405)):
        status, _, body = server.request(method, path)
        assert status == code and "POST /predict" in json.loads(body)["error"]
    for garbage in (b"GARBAGE\r\n\r\n", b"POST /predict HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{\"te",
                    b"\x00\xff" * 5000, b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 100_000 + b"\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
            try:
                raw.sendall(garbage)
                raw.shutdown(socket.SHUT_WR)
                raw.recv(4096)  # an error status or a closed connection; never a hang or a dead server
            except OSError:
                pass
    assert server.request("GET", "/health")[0] == 200
    assert server.process.poll() is None


# --- the command line ----------------------------------------------------------------------------------------------

def test_cli_errors_are_one_line(bundle, tmp_path, monkeypatch):
    runner = CliRunner()
    missing = runner.invoke(main, ["serve", "--model", str(tmp_path / "nothing")])
    assert missing.exit_code == 1 and missing.stderr.startswith("error: no bundle at") and "Traceback" not in missing.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = runner.invoke(main, ["serve", "--model", str(bundle), "--port", str(port)])
    assert busy.exit_code == 2 and busy.stderr == f"error: port {port} on 127.0.0.1 is in use; pass another --port (or --port 0 for a free one)\n"
    bad_host = runner.invoke(main, ["serve", "--model", str(bundle), "--host", "no.such.host.invalid"])
    assert bad_host.exit_code == 2 and "is not an address of this machine" in bad_host.stderr
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the serve extra were not installed
    no_extra = runner.invoke(main, ["serve", "--model", str(bundle)])
    assert no_extra.exit_code == 2 and "pip install 'nlp-pipeline[serve]'" in no_extra.stderr
    assert "--max-request-bytes" in runner.invoke(main, ["serve", "--help"]).output


def test_a_run_folder_is_served_with_its_run_record(bundle, tmp_path):
    run = tmp_path / "runs" / "demo"
    shutil.copytree(bundle, run / "model")
    (run / "run.json").write_text(json.dumps({"name": "demo", "written_at": "2026-12-06T10:00:00+0000",
                                              "nlp_pipeline_version": "0.1.0", "model_keys": None}))
    card = model_card(Classifier.load(run, num_threads=1))
    assert card["run"]["name"] == "demo" and card["path"] == str(run / "model")


# --- in-process: the batcher and the body parser -----------------------------------------------------------------

def test_the_batcher_fills_batches_with_whole_requests_and_isolates_a_failure():
    calls: list[list[str]] = []

    def predict(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        if "bad" in texts:
            raise RuntimeError("cannot")
        return [t.upper() for t in texts]

    async def scenario():
        batcher = MicroBatcher(predict, ServeLimits(max_batch=8))
        jobs = [asyncio.ensure_future(batcher.submit(texts)) for texts in
                (["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"], ["j"], [f"k{i}" for i in range(10)])]
        await asyncio.sleep(0)  # all five queued before the worker starts
        worker = asyncio.ensure_future(batcher.run())
        answers = await asyncio.gather(*jobs)
        assert [len(c) for c in calls] == [6, 4, 10]  # 3+3 (a third would pass 8), 3+1, then 10 alone
        assert answers[0] == ["A", "B", "C"] and answers[3] == ["J"] and answers[4][-1] == "K9"
        calls.clear()
        good, bad, other = (asyncio.ensure_future(batcher.submit(t)) for t in (["x"], ["bad"], ["y"]))
        results = await asyncio.gather(good, bad, other, return_exceptions=True)
        assert results[0] == ["X"] and isinstance(results[1], RuntimeError) and results[2] == ["Y"]
        assert calls == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]  # the batch failed, then each request alone
        full = MicroBatcher(predict, ServeLimits(max_queued_texts=2))
        with pytest.raises(Busy):
            await full.submit(["1", "2", "3"])
        worker.cancel()
        batcher.close()
        full.close()

    asyncio.run(scenario())


def test_parse_predict_body_examples():
    assert parse_predict_body(b'{"text": "hi"}', 10) == ["hi"]
    assert parse_predict_body(b'{"texts": ["a", ""]}', 10) == ["a", ""]
    assert parse_predict_body(b'{"text": "\\ud83d"}', 10) == ["\ud83d"]  # read as U+FFFD by the classifier
    with pytest.raises(RequestError) as refused:
        parse_predict_body(b'{"texts": ["a", "b", "c"]}', 2)
    assert refused.value.status == 413
    with pytest.raises(ConfigError, match="--max-batch must be at least 1"):
        ServeLimits(max_batch=0).validate()
