"""The GPT / OpenAI-compatible adapter against a real chat-completions server on 127.0.0.1.

The official `openai` client does the talking; tests/chat_server.py answers, misbehaves
on request (429 with Retry-After, 5xx, hangs, malformed bodies, 4xx) and counts
requests and concurrency.
"""

import base64
import io
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from adbench import registry
from adbench.models.api.openai_chat import MMAD_INSTRUCTION, APIConfigError, mmad_text
from adbench.runner import RunSpec, run
from tests.chat_server import COMPLETION_TOKENS, ChatServer
from tests.helpers import write_mini_mmad

ROOT = Path(__file__).resolve().parent.parent
registry.register_task("mini-binary", "tests.helpers:mini_binary_task", "test task")
PRICE_IN, PRICE_OUT = 2.5, 10.0  # USD per 1M tokens, given with -M for the test model


@pytest.fixture()
def secret(monkeypatch):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    return key


@pytest.fixture()
def suite(tmp_path):
    return write_mini_mmad(tmp_path / "data")


@pytest.fixture()
def server():
    with ChatServer(hang_s=1.5) as srv:
        yield srv


def api_run(srv, suite, tmp_path, out="runs", model="openai-compatible", limit=8, batch_size=8, max_cost=None,
            **margs):
    args = {"base_url": srv.url, "cache_dir": str(tmp_path / "cache"), "backoff_base": 0.01, "timeout": 5,
            "price_in": PRICE_IN, "price_out": PRICE_OUT, **margs}
    if model == "openai-compatible":
        args.setdefault("model", "test-vlm")
    return run(RunSpec(model=model, task="mini-binary", data_root=suite, out=tmp_path / out, limit=limit,
                       batch_size=batch_size, max_cost=max_cost, progress=False, model_args=args))


def records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]


def expected_cost(rec_usage: dict) -> float:
    return (rec_usage["prompt_tokens"] * PRICE_IN + rec_usage["completion_tokens"] * PRICE_OUT) / 1e6


def test_transient_faults_are_retried_and_every_sample_answered_once(server, suite, tmp_path, secret):
    faults = ["429", "500", "503", "hang", "malformed", "no_choices"]
    server.faults.extend(faults)
    # more retries than faults: whichever worker draws them, no sample can run out
    o = api_run(server, suite, tmp_path, concurrency=2, timeout=0.4, max_retries=len(faults))
    recs = records(o.run_dir)
    assert len(recs) == 8 and len({r["id"] for r in recs}) == 8
    assert [r["error"] for r in recs] == [None] * 8
    assert all(r["answer"] == "A" and r["parse_status"] == "ok" for r in recs)
    assert server.n_requests == 8 + len(faults)
    assert sum(r["usage"]["requests"] for r in recs) == 8 + len(faults)
    assert all(r["usage"]["cost_usd"] == pytest.approx(expected_cost(r["usage"])) for r in recs)
    usage = o.results["usage"]
    assert usage["requests"] == 8 + len(faults)
    assert usage["cost_usd"] == pytest.approx(sum(expected_cost(r["usage"]) for r in recs))
    assert usage["completion_tokens"] == 8 * COMPLETION_TOKENS
    assert o.results["counts"]["n_failed"] == 0


def test_retry_after_is_honoured_and_too_long_a_wait_is_a_retryable_failure(server, suite, tmp_path, secret):
    server.faults.extend(["429:1", "ok", "429:100"])
    o = api_run(server, suite, tmp_path, limit=2, concurrency=1, max_retries=2, backoff_max=5)
    first, second = server.requests[0], server.requests[1]
    assert first["fault"] == "429:1" and second["t"] - first["t"] >= 0.95  # backoff alone would be ~0.01 s
    recs = {r["id"]: r for r in records(o.run_dir)}
    failed = [r for r in recs.values() if r["error"]]
    answered = [r for r in recs.values() if not r["error"]]
    assert len(failed) == 1 and len(answered) == 1
    # the second sample was told to wait 100 s (> backoff_max): recorded at once, asked again on a re-run
    assert failed[0]["retryable"] is True and "HTTP 429" in failed[0]["error"] and failed[0]["answer"] is None
    assert server.n_requests == 3


def test_permanent_faults_are_recorded_as_errors_and_not_retried(server, suite, tmp_path, secret):
    server.faults.extend(["400", "404"])
    o = api_run(server, suite, tmp_path, concurrency=1, max_retries=3)
    recs = records(o.run_dir)
    failed = [r for r in recs if r["error"]]
    assert len(recs) == 8 and len(failed) == 2
    assert {r["error"].split(":")[0] for r in failed} == {"HTTP 400", "HTTP 404"}
    assert all(r["retryable"] is False and r["answer"] is None and r["correct"] is False for r in failed)
    assert server.n_requests == 8
    assert o.results["counts"]["n_failed"] == 2
    again = api_run(server, suite, tmp_path, concurrency=1, max_retries=3)
    assert again.run_dir == o.run_dir and again.n_new == 0 and server.n_requests == 8


def test_a_key_refused_mid_run_is_asked_again_on_resume(server, suite, tmp_path, secret):
    """A 401/403 is not retried at once (no minutes of backoff), but it is no verdict on the sample either."""
    server.faults.extend(["ok", "ok", "401_echo", "ok", "ok", "ok", "ok", "ok"])
    o = api_run(server, suite, tmp_path, concurrency=1, max_retries=3)
    failed = [r for r in records(o.run_dir) if r["error"]]
    assert len(failed) == 1 and failed[0]["error"].startswith("HTTP 401") and failed[0]["retryable"] is True
    assert server.n_requests == 8  # the 401 was asked once
    again = api_run(server, suite, tmp_path, concurrency=1, max_retries=3)
    assert again.n_new == 1 and server.n_requests == 9
    assert not any(r["error"] for r in records(o.run_dir)) and again.results["counts"]["n_failed"] == 0


def test_exhausted_retries_are_retryable_and_a_rerun_asks_only_those(server, suite, tmp_path, secret):
    server.faults.extend(["500"] * 4)
    o = api_run(server, suite, tmp_path, concurrency=1, max_retries=1)
    recs = records(o.run_dir)
    failed = [r for r in recs if r["error"]]
    assert len(failed) == 2 and server.n_requests == 2 * 2 + 6
    for r in failed:
        assert r["retryable"] is True and r["answer"] is None and r["text"] is None
        assert "HTTP 500" in r["error"] and "after 2 requests" in r["error"]
    # another concurrency is a runtime argument: same run directory, only the two failures asked again
    again = api_run(server, suite, tmp_path, concurrency=3, max_retries=1)
    assert again.run_dir == o.run_dir and again.n_new == 2
    assert server.n_requests == 10 + 2
    final = records(o.run_dir)
    assert len(final) == 8 and len({r["id"] for r in final}) == 8 and not any(r["error"] for r in final)
    assert again.results["counts"] == {"n": 8, "n_failed": 0, "n_unparsed": 0, "n_expected": 8}


def test_second_run_sends_no_request_and_the_cache_marks_its_answers(server, suite, tmp_path, secret):
    first = api_run(server, suite, tmp_path)
    assert server.n_requests == 8
    assert api_run(server, suite, tmp_path).n_new == 0 and server.n_requests == 8  # resumed: nothing to do
    fresh = api_run(server, suite, tmp_path, out="runs-again")  # a new run directory, same requests
    assert fresh.run_dir != first.run_dir and fresh.n_new == 8
    assert server.n_requests == 8  # every answer came from the cache
    before = {r["id"]: r for r in records(first.run_dir)}
    for r in records(fresh.run_dir):
        assert r["meta"]["cached"] is True and r["usage"]["cache_hits"] == 1 and r["usage"]["requests"] == 0
        assert r["usage"]["cost_usd"] == 0.0
        assert r["usage"]["prompt_tokens"] == before[r["id"]]["usage"]["prompt_tokens"]
        assert r["meta"]["original_cost_usd"] == pytest.approx(before[r["id"]]["usage"]["cost_usd"])
        assert r["text"] == before[r["id"]]["text"]
    assert fresh.results["usage"]["cost_usd"] == 0.0 and fresh.results["usage"]["cache_hits"] == 8
    # the key covers generation settings: another max_new_tokens is another request
    api_run(server, suite, tmp_path, out="runs-other", max_new_tokens=64)
    assert server.n_requests == 16
    api_run(server, suite, tmp_path, out="runs-nocache", cache=False)
    assert server.n_requests == 24


def test_api_key_is_used_but_written_nowhere(server, suite, tmp_path, secret):
    server.faults.append("401_echo")  # a server that echoes the key in its error message
    o = api_run(server, suite, tmp_path, concurrency=1)
    assert all(req["auth"] == f"Bearer {secret}" for req in server.requests)
    failed = [r for r in records(o.run_dir) if r["error"]]
    assert len(failed) == 1 and "HTTP 401" in failed[0]["error"] and "***" in failed[0]["error"]
    config = json.loads((o.run_dir / "config.json").read_text())
    assert config["model_config"]["api_key_env"] == "OPENAI_API_KEY"
    files = [p for d in (o.run_dir, tmp_path / "cache") for p in d.rglob("*") if p.is_file()]
    assert len(files) > 8  # run files and cache entries were written
    for p in files:
        assert secret not in p.read_text(errors="replace"), p


def test_a_successful_body_that_echoes_the_key_is_scrubbed_before_it_is_kept(server, suite, tmp_path, secret):
    server.faults.extend(["200_echo", "200_echo"])
    o = api_run(server, suite, tmp_path, concurrency=1, limit=4)
    echoed = [r for r in records(o.run_dir) if "sent with key" in (r["text"] or "")]
    assert len(echoed) == 2 and all(r["text"].endswith("(sent with key ***)") for r in echoed)
    assert all(r["meta"]["model"] == "test-vlm***" and r["meta"]["request_id"].endswith("***") for r in echoed)
    assert all(r["answer"] == "A" and r["error"] is None for r in echoed)  # the answer itself is kept
    files = [p for d in (o.run_dir, tmp_path / "cache") for p in d.rglob("*") if p.is_file()]
    assert any("sent with key ***" in p.read_text(errors="replace") for p in files if "cache" in p.parts)
    for p in files:
        assert secret not in p.read_text(errors="replace"), p
    again = api_run(server, suite, tmp_path, concurrency=1, limit=4)  # answered from the cache
    assert server.n_requests == 4 and all(secret not in (r["text"] or "") for r in records(again.run_dir))


def test_key_comes_from_the_named_environment_variable_only(server, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(APIConfigError, match="OPENAI_API_KEY"):
        registry.make_model("gpt-4o", base_url=server.url)
    monkeypatch.setenv("MY_GATEWAY_KEY", "k-123456")
    with pytest.raises(APIConfigError, match="MY_OTHER"):
        registry.make_model("openai-compatible", base_url=server.url, model="m", api_key_env="MY_OTHER")
    model = registry.make_model("gpt-4o", base_url=server.url, api_key_env="MY_GATEWAY_KEY")
    assert "k-123456" not in json.dumps(model.config())
    model.close()


def test_concurrency_never_exceeds_the_limit(suite, tmp_path, secret):
    with ChatServer(delay=0.15) as srv:
        api_run(srv, suite, tmp_path, limit=12, batch_size=12, concurrency=3)
        assert srv.n_requests == 12
        assert srv.max_inflight == 3  # reached (the queries run concurrently) and never passed


def test_max_cost_stops_early_and_a_rerun_continues(server, suite, tmp_path, secret):
    # one-shot queries: two images; every sample costs the same, so the budget allows exactly two batches
    one = api_run(server, suite, tmp_path, out="probe", limit=1, cache=False)
    per_sample = one.results["usage"]["cost_usd"]
    start = server.n_requests
    o = api_run(server, suite, tmp_path, batch_size=2, max_cost=4.5 * per_sample)
    assert o.stopped and "budget" in o.stopped
    assert len(records(o.run_dir)) == 4 and server.n_requests - start == 4
    assert o.results["usage"]["cost_usd"] <= 4.5 * per_sample and o.results["complete"] is False
    again = api_run(server, suite, tmp_path, batch_size=2)
    assert again.run_dir == o.run_dir and again.n_new == 4 and server.n_requests - start == 8
    final = records(o.run_dir)
    assert len(final) == 8 and len({r["id"] for r in final}) == 8
    assert again.results["usage"]["cost_usd"] == pytest.approx(8 * per_sample)


def _decode(url: str) -> Image.Image:
    head, _, data = url.partition(",")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_mmad_preset_mirrors_mmads_gpt4o_request(server, suite, tmp_path, secret):
    o = api_run(server, suite, tmp_path, model="gpt-4o", limit=1, mmad=True)
    body = server.requests[0]["body"]
    assert body["model"] == "gpt-4o-2024-08-06" and body["max_tokens"] == 200 and "temperature" not in body
    content = body["messages"][-1]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "text"]  # reference, query, text
    for part in content[:2]:
        assert part["image_url"]["detail"] == "low"
        assert part["image_url"]["url"].startswith("data:image/jpeg;base64,")
        im = _decode(part["image_url"]["url"])
        assert im.format == "JPEG" and im.size == (512, 512)  # 32x32 test images fitted into 512x512
    text = content[2]["text"]
    assert text.startswith(MMAD_INSTRUCTION)
    assert "The first 1 image shows a normal sample to compare with." in text
    assert "Question: Is there any defect in the object?\nA. Yes.\nB. No.\n" in text
    config = json.loads((o.run_dir / "config.json").read_text())["model_config"]
    assert config["model"] == "gpt-4o-2024-08-06" and config["mmad"] is True
    assert config["price"]["input"] == PRICE_IN  # the -M override of the table
    # MMAD's script samples at the API's default temperature: none is sent, none recorded
    assert config["generation"] == {"max_new_tokens": 200, "min_new_tokens": None, "do_sample": True,
                                    "temperature": None, "top_p": None, "top_k": None, "repetition_penalty": None,
                                    "seed": 0, "stop": None}


def test_gpt_preset_is_pinned_and_priced_from_the_table(server, suite, tmp_path, secret):
    from adbench.models.api.prices import load_table

    table = load_table()["models"]["gpt-4o-mini-2024-07-18"]
    o = run(RunSpec(model="gpt-4o-mini", task="mini-binary", data_root=suite, out=tmp_path / "runs", limit=2,
                    progress=False, model_args={"base_url": server.url, "cache_dir": str(tmp_path / "cache")}))
    assert {r["body"]["model"] for r in server.requests} == {"gpt-4o-mini-2024-07-18"}
    for r in records(o.run_dir):
        u = r["usage"]
        assert u["cost_usd"] == pytest.approx((u["prompt_tokens"] * table["input"]
                                               + u["completion_tokens"] * table["output"]) / 1e6)
    config = json.loads((o.run_dir / "config.json").read_text())
    assert config["model_config"]["model"] == "gpt-4o-mini-2024-07-18"
    assert "as of" in config["model_config"]["price"]["source"]
    assert "base_url" not in config["model_args"]  # a runtime argument: not part of the run's identity


def test_default_layout_interleaves_the_tasks_segments(server, suite, tmp_path, secret):
    o = api_run(server, suite, tmp_path, limit=1, detail="high")
    body = server.requests[0]["body"]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 128 and body["seed"] == 0
    assert not {"top_p", "stop"} & set(body)
    generation = json.loads((o.run_dir / "config.json").read_text())["model_config"]["generation"]
    assert (generation["do_sample"], generation["max_new_tokens"], generation["seed"]) == (False, 128, 0)
    content = body["messages"][-1]["content"]
    kinds = [p["type"] for p in content]
    assert kinds == ["text", "text", "image_url", "text", "image_url", "text"]
    assert "normal" in content[1]["text"].lower() and "Question:" in content[5]["text"]
    im = _decode(content[2]["image_url"]["url"])
    assert im.format == "PNG" and im.size == (32, 32) and content[2]["image_url"]["detail"] == "high"


def test_cli_runs_openai_compatible_against_the_server(server, tmp_path, secret):
    (tmp_path / "data").mkdir()  # a --data-root must exist; the demo suite is generated inside it on first use
    env = {**os.environ, "ADBENCH_CACHE": str(tmp_path / "cache"), "OPENAI_API_KEY": secret}
    cmd = [sys.executable, "-m", "adbench", "run", "--model", "openai-compatible",
           "-M", f"base_url={server.url}", "-M", "model=served-vlm", "-M", "backoff_base=0.01",
           "--task", "demo-binary", "--limit", "8", "--data-root", str(tmp_path / "data"),
           "--out", str(tmp_path / "runs"), "--no-progress"]
    t = time.monotonic()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    run_dir = Path(p.stdout.strip().splitlines()[-1])
    assert "openai-compatible on demo-binary: accuracy" in p.stdout and "failed=0" in p.stdout
    recs = records(run_dir)
    assert len(recs) == 8 and server.n_requests == 8 and all(r["answer"] == "A" for r in recs)
    assert {r["body"]["model"] for r in server.requests} == {"served-vlm"}
    assert list((tmp_path / "cache" / "api").rglob("*.json"))  # $ADBENCH_CACHE chose the cache folder
    assert secret not in p.stdout + p.stderr
    assert time.monotonic() - t < 60


def test_decoding_settings_are_sent_under_the_apis_names(server, suite, tmp_path, secret):
    api_run(server, suite, tmp_path, limit=1, temperature=0.7, top_p=0.9, stop=["\n\n", "###"], max_new_tokens=32)
    body = server.requests[0]["body"]
    assert (body["temperature"], body["top_p"], body["stop"], body["max_tokens"]) == (0.7, 0.9, ["\n\n", "###"], 32)
    api_run(server, suite, tmp_path, out="sampled", limit=1, do_sample=True)  # the API's default temperature
    assert "temperature" not in server.requests[1]["body"]


def test_settings_the_api_has_no_field_for_and_old_names_are_refused(secret):
    url = "http://127.0.0.1:9/v1"
    for key, value in (("top_k", 5), ("repetition_penalty", 1.05), ("min_new_tokens", 2)):
        with pytest.raises(ValueError, match=f"the chat-completions API has no {key}: drop -M {key}"):
            registry.make_model("openai-compatible", base_url=url, model="m", **{key: value})
    with pytest.raises(registry.RegistryError, match=r"-M max_tokens \(-M max_tokens is now -M max_new_tokens\)"):
        registry.parse_assignments([f"base_url={url}", "model=m", "max_tokens=64"], "-M", "openai-compatible")
    with pytest.raises(ValueError, match="needs sampling: drop -M do_sample=false"):
        registry.make_model("openai-compatible", base_url=url, model="m", do_sample=False, temperature=0.5)


def test_openai_compatible_needs_base_url_and_model(secret):
    with pytest.raises(APIConfigError, match="base_url"):
        registry.make_model("openai-compatible", model="m")
    with pytest.raises(APIConfigError, match="model="):
        registry.make_model("openai-compatible", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="-M cache: expected true or false, got 'flase'"):  # adbench.args
        registry.make_model("openai-compatible", base_url="http://127.0.0.1:1/v1", model="m", cache="flase")


def test_mmad_text_without_references_has_no_template_sentence():
    from adbench.schema import Query

    q = Query(id="x", images=["q.png"], question="Is it broken?", options={"A": "Yes.", "B": "No."}, prompt="")
    text = mmad_text(q)
    assert "normal sample" not in text and text.endswith("Question: Is it broken?\nA. Yes.\nB. No.\n")
    assert mmad_text(q, "CUSTOM\n").startswith("CUSTOM\n")  # -M instruction_file text


def test_mmad_mode_asks_again_after_a_refusal_like_reply_and_counts_both(suite, tmp_path, secret):
    replies = iter(["Sorry, I cannot assist with that.", "1. Answer: B."])
    with ChatServer(reply=lambda body: next(replies, "Answer: A.")) as srv:
        o = api_run(srv, suite, tmp_path, limit=1, mmad=True, concurrency=1)
        (rec,) = records(o.run_dir)
        assert srv.n_requests == 2 and rec["answer"] == "B" and rec["usage"]["requests"] == 2
        assert rec["meta"]["reasked"] == ["Sorry, I cannot assist with that."]
        assert rec["usage"]["completion_tokens"] == 2 * COMPLETION_TOKENS  # both replies were paid for
        # without mmad=true a reply is taken as it is
        replies = iter(["Sorry, I cannot tell."])
        srv.reply = lambda body: next(replies, "Answer: A.")
        plain = api_run(srv, suite, tmp_path, out="plain", limit=1, concurrency=1)
        (rec,) = records(plain.run_dir)
        assert srv.n_requests == 3 and rec["text"] == "Sorry, I cannot tell." and rec["parse_status"] == "unparsed"
