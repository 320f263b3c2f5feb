"""Pieces of the API adapter: backoff, Retry-After, prices, image sizing, cache keys."""

import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from tenacity import RetryCallState, Retrying

from adbench.models.api.cache import ResponseCache, request_key
from adbench.models.api.images import ImageEncoding, target_size
from adbench.models.api.openai_chat import SNAPSHOTS, MalformedResponse, extract_reply
from adbench.models.api.prices import Price, PriceError, load_table, resolve_price
from adbench.models.api.retry import AskAgain, RetryPolicy, Stopped, is_transient_status, parse_retry_after


def failed(attempt: int, retry_after: float | None = None) -> RetryCallState:
    """tenacity's state after the `attempt`-th request failed (with the server's Retry-After, if any)."""
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((AskAgain, AskAgain("HTTP 429", retry_after), None))
    return state


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    policy = RetryPolicy(max_retries=5, backoff_base=1.0, backoff_max=6.0)
    for retry, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0), (5, 6.0)):
        waits = [policy.wait(failed(retry)) for _ in range(200)]
        assert min(waits) >= full / 2 and max(waits) <= full
        assert max(waits) - min(waits) > full / 4  # jittered, not a constant


def test_retry_after_wins_over_shorter_backoff_and_too_long_means_give_up():
    policy = RetryPolicy(backoff_base=0.01, backoff_max=10.0)
    assert policy.wait(failed(1, 3.0)) == 3.0 and not policy.too_long(failed(1, 3.0))
    assert policy.too_long(failed(1, 11.0)) and not policy.too_long(failed(1))


def test_retrying_asks_again_only_what_is_worth_it_and_stops_when_told():
    import threading

    policy = RetryPolicy(max_retries=2, backoff_base=0.0)
    calls = []

    def flaky(outcomes):
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    never = threading.Event()
    assert policy.retrying(never)(flaky, [AskAgain("500"), AskAgain("503"), "answer"]) == "answer"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(AskAgain, match="third"):  # max_retries=2: three requests, then the last fault
        policy.retrying(never)(flaky, [AskAgain("first"), AskAgain("second"), AskAgain("third"), "answer"])
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(KeyError):  # anything else is not asked again
        policy.retrying(never)(flaky, [KeyError("x"), "answer"])
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(AskAgain, match="wait"):  # a Retry-After beyond backoff_max: given up at once
        policy.retrying(never)(flaky, [AskAgain("wait", retry_after=3600), "answer"])
    assert len(calls) == 1
    calls.clear()
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(Stopped):  # the run is stopping: no waiting, no second request
        RetryPolicy(max_retries=2, backoff_base=30).retrying(stopping)(flaky, [AskAgain("500"), "answer"])
    assert len(calls) == 1


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 28 <= parse_retry_after({"Retry-After": later}) <= 30
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None
    assert parse_retry_after({}) is None


def test_transient_statuses():
    assert [s for s in (400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503) if is_transient_status(s)] == [
        408, 429, 500, 502, 503]


def test_price_cost_bills_cached_prompt_tokens_at_the_cached_rate():
    p = Price(input=2.0, output=8.0, cached_input=0.5)
    assert p.cost(1000, 100) == pytest.approx((1000 * 2 + 100 * 8) / 1e6)
    assert p.cost(1000, 100, cached_tokens=400) == pytest.approx((600 * 2 + 400 * 0.5 + 100 * 8) / 1e6)


def test_every_preset_snapshot_is_in_the_dated_table():
    table = load_table()
    assert table["as_of"] and table["source"]
    for snapshot in SNAPSHOTS.values():
        assert snapshot in table["models"], snapshot
    assert resolve_price("gpt-4o-2024-08-06").input == 2.5


def test_price_overrides_and_errors(tmp_path):
    assert resolve_price("local-model") is None  # unknown model, no override: tokens only, no cost
    assert resolve_price("local-model", price_in=1, price_out=2) == Price(1.0, 2.0, None, resolve_price(
        "local-model", price_in=1, price_out=2).source)
    over = resolve_price("gpt-4o-2024-08-06", price_out=20)
    assert (over.input, over.output, over.cached_input) == (2.5, 20.0, 1.25)
    with pytest.raises(PriceError, match="price_out"):
        resolve_price("local-model", price_in=1)
    with pytest.raises(PriceError, match="not found"):
        resolve_price("gpt-4o-2024-08-06", tmp_path / "none.json")
    bad = tmp_path / "prices.json"
    bad.write_text(json.dumps({"models": {"m": {"input": "cheap"}}}))
    with pytest.raises(PriceError, match=r"prices\.json.*'m'"):
        resolve_price("m", bad)
    good = tmp_path / "mine.json"
    good.write_text(json.dumps({"as_of": "2030-01-01", "models": {"m": {"input": 1, "output": 3}}}))
    assert resolve_price("m", good).output == 3.0 and "2030-01-01" in resolve_price("m", good).source


def test_target_size_caps_the_longer_side_like_mmads_script():
    mmad = ImageEncoding(max_side=512, upscale=True, format="jpeg")
    assert target_size(1024, 768, mmad) == (512, 384)
    assert target_size(700, 1000, mmad) == (358, 512)  # int(700 * 0.512) = 358, truncated
    assert target_size(32, 32, mmad) == (512, 512)
    plain = ImageEncoding(max_side=512)
    assert target_size(32, 32, plain) == (32, 32) and target_size(2048, 1024, plain) == (512, 256)
    assert target_size(3000, 10, ImageEncoding(max_side=None)) == (3000, 10)
    with pytest.raises(ValueError, match="image_format"):
        ImageEncoding(format="gif")


def test_cache_key_is_canonical_and_entries_round_trip(tmp_path):
    a = {"endpoint": "e", "body": {"model": "m", "messages": [1, 2]}}
    b = {"body": {"messages": [1, 2], "model": "m"}, "endpoint": "e"}
    assert request_key(a) == request_key(b) != request_key({**a, "endpoint": "f"})
    cache = ResponseCache(tmp_path)
    key = request_key(a)
    assert cache.get(key) is None
    cache.put(key, a, {"choices": []})
    assert cache.get(key)["response"] == {"choices": []}
    cache.path(key).write_text("{half")  # a damaged entry is a miss, not a crash
    assert cache.get(key) is None


def test_extract_reply_rejects_non_completions_and_keeps_refusals():
    for body in ([], {}, {"choices": []}, {"choices": [{}]}, {"choices": [{"message": {"content": None}}]}):
        with pytest.raises(MalformedResponse):
            extract_reply(body)
    r = extract_reply({"choices": [{"message": {"content": None, "refusal": "I can't help"}}]})
    assert r["text"] is None and r["refusal"] == "I can't help" and r["prompt_tokens"] is None
    r = extract_reply({"choices": [{"message": {"content": [{"type": "text", "text": "B"}]}}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                 "prompt_tokens_details": {"cached_tokens": 4}}})
    assert (r["text"], r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"]) == ("B", 10, 1, 4)
