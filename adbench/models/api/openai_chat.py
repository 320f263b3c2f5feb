"""GPT models and OpenAI-compatible servers (vLLM, ...) through the official `openai` client.

Presets (`adbench run --model NAME`):

- `gpt-4.1`, `gpt-4o`, `gpt-4o-mini`: OpenAI's API, pinned to dated snapshots (the
  snapshot is recorded in the run's config; `-M model=` picks another one).
- `openai-compatible`: any server that speaks the chat-completions protocol, with
  `-M base_url=http://HOST:PORT/v1 -M model=NAME`.

What the adapter adds to the client:

- Bounded concurrency (`-M concurrency=N`): the queries of one batch are asked by at
  most N worker threads, so give the run `--batch-size` >= N.
- Retries by tenacity (`retry.py`; the client's own are turned off): exponential backoff
  with jitter that honours `Retry-After`, on 429, 408, 5xx, connection errors, timeouts
  (`-M timeout=`) and malformed bodies. After the last retry the Response carries the
  error with `retryable=True`, so the next run of the same command asks again; so does a
  401/403 (a key or permission problem, not retried now but asked again once it is
  fixed); other 4xx answers are the request's fault and are recorded as permanent
  errors. Never a placeholder answer. Every request made is counted in `usage`.
- A response cache on disk keyed by the full request (see cache.py).
- Token usage and cost per sample from a dated price table (see prices.py).
- Decoding settings under the names every adapter takes (`adbench.models.generation`):
  `max_new_tokens` is sent as `max_tokens`; greedy decoding (the default) as
  temperature 0; `-M max_tokens` is refused with the new name.
- The API key is read from the environment (`OPENAI_API_KEY`, or the variable named by
  `-M api_key_env=`) and kept in memory only: it is not part of config(), and error
  texts and response bodies (a 200 body can echo it too) are scrubbed of it before they
  are recorded or cached.

`-M mmad=true` mirrors MMAD's GPT-4o evaluation script (jam-cc/MMAD,
evaluation/examples/GPT4/gpt4o.py) so published MMAD numbers are comparable: every
image fitted into 512x512 (small ones enlarged) and sent as JPEG with `detail: low`,
reference image(s) first and the query image last, then MMAD's instruction and the
question as one text, 200 new tokens, sampling at the API's default temperature, and a
reply that reads like a refusal ("sorry", "please", ...) asked again, as MMAD's script does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adbench.answers import parse_option
from adbench.errors import UserError
from adbench.images import ImageError
from adbench.model import Model, OutputKind
from adbench.models.api.cache import KEY_VERSION, ResponseCache, default_cache_dir, request_key
from adbench.models.api.images import ImageEncoding, content_hash, data_url
from adbench.models.api.prices import Price, resolve_price
from adbench.models.api.retry import (
    AskAgain,
    RetryPolicy,
    Stopped,
    ask_again_on_resume,
    is_transient_status,
    parse_retry_after,
)
from adbench.models.generation import Generates
from adbench.models.prompting import MMAD_INSTRUCTION, parse_flag, read_instruction
from adbench.schema import ParseStatus, Query, Response

OPENAI_BASE_URL = "https://api.openai.com/v1"

#: Preset name -> dated snapshot. Aliases such as "gpt-4o" move to newer snapshots
#: over time; a benchmark number needs the snapshot that produced it.
SNAPSHOTS = {
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
}

DETAILS = ("auto", "low", "high")

#: MMAD's script asks again (up to 5 times) when a reply contains one of these words.
MMAD_REASK_WORDS = ("please", "sorry", "today", "cannot assist")

#: What `-M mmad=true` sets (each can still be overridden by its own -M argument).
MMAD_SETTINGS: dict[str, Any] = {
    "max_side": 512,
    "upscale": True,
    "image_format": "jpeg",
    "detail": "low",
}
#: Decoding defaults: greedy (sent as temperature 0), 128 new tokens; under mmad=true, MMAD's script's:
#: 200 new tokens, sampling at the API's default temperature (none is sent).
API_DEFAULTS: dict[str, Any] = {"max_new_tokens": 128, "do_sample": False}
MMAD_DEFAULTS: dict[str, Any] = {"max_new_tokens": 200, "do_sample": True}
#: Settings of `GenerationConfig` the chat-completions API has no field for.
NOT_IN_THE_API = ("min_new_tokens", "top_k", "repetition_penalty")


class APIConfigError(UserError):
    """A missing API key, base URL or model name; the message says which -M argument or variable."""


class MalformedResponse(ValueError):
    """A body that is not a chat completion (bad JSON, no choices, no message)."""


class NotAskedAgain(Exception):
    """An HTTP answer that is the request's or the key's fault: not retried now."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Answer:
    """One well-formed reply: the raw HTTP answer, its scrubbed body, what adbench reads from it, its latency."""

    raw: Any
    payload: Any
    reply: dict[str, Any]
    latency: float


class Refused(AskAgain):
    """Under mmad=true, a reply that reads like a refusal: asked again; the last one is kept whatever it says."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("every reply read like a refusal")
        self.answer = answer


@dataclass
class Asked:
    """One query's requests so far: every request is counted, and every reply asked again was paid for."""

    requests: int = 0
    error: str = ""
    discarded: list[dict[str, Any]] = field(default_factory=list)


def _flag(value: Any, name: str) -> bool:
    """A yes/no -M argument (`prompting.parse_flag`), reported as an APIConfigError."""
    return parse_flag(value, name, APIConfigError)


def mmad_text(query: Query, instruction: str = MMAD_INSTRUCTION) -> str:
    """The one text block an MMAD-style request sends after the images."""
    parts = [instruction]
    if query.n_references:
        n = query.n_references
        parts.append(f"The first {n} image{'s show' if n > 1 else ' shows'} a normal sample to compare with. ")
    parts.append("The last image is the query image.\n")
    options = "".join(f"{k}. {v}\n" for k, v in query.options.items())
    parts.append(f"Question: {query.question}\n{options}")
    return "".join(parts)


def _message_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers answer with content parts
        texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return None


def extract_reply(body: Any) -> dict[str, Any]:
    """The parts of a chat-completion body adbench uses; MalformedResponse if it is not one."""
    if not isinstance(body, dict):
        raise MalformedResponse(f"expected a JSON object, got {type(body).__name__}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponse("no 'choices' in the response body")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise MalformedResponse("choices[0] has no 'message'")
    text = _message_text(message.get("content"))
    refusal = message.get("refusal") if isinstance(message.get("refusal"), str) else None
    if text is None and refusal is None:
        raise MalformedResponse("choices[0].message has neither text content nor a refusal")
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    details = usage.get("prompt_tokens_details") if isinstance(usage.get("prompt_tokens_details"), dict) else {}

    def count(d: dict[str, Any], k: str) -> int | None:
        v = d.get(k)
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 else None

    return {
        "text": text,
        "refusal": refusal,
        "finish_reason": choices[0].get("finish_reason"),
        "model": body.get("model"),
        "system_fingerprint": body.get("system_fingerprint"),
        "prompt_tokens": count(usage, "prompt_tokens"),
        "completion_tokens": count(usage, "completion_tokens"),
        "cached_tokens": count(details, "cached_tokens") or 0,
    }


class OpenAIChatModel(Model, Generates):
    """Chat-completions adapter; the presets below fix `preset` (and so the default snapshot)."""

    name = "openai-compatible"
    output = OutputKind.GENERATIVE
    preset: str | None = None  # a key of SNAPSHOTS, or None for an OpenAI-compatible server
    #: -M names this adapter used to take: an old command's error names the new one (adbench.registry)
    renamed_args = {"max_tokens": "max_new_tokens"}

    #: -M arguments that change how answers are fetched, not which answers: a run resumed
    #: with another concurrency, timeout, cache folder or price keeps its run directory.
    runtime_args = (
        "base_url", "api_key_env", "concurrency", "timeout", "max_retries", "backoff_base", "backoff_max",
        "cache", "cache_dir", "prices", "price_in", "price_out",
    )

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key_env: str | None = None,
        mmad: bool = False,
        detail: str | None = None,
        max_side: int | None = None,
        upscale: bool | None = None,
        image_format: str | None = None,
        jpeg_quality: int = 95,
        system_prompt: str | None = None,
        instruction_file: str | None = None,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        cache: bool = True,
        cache_dir: str | None = None,
        prices: str | None = None,
        price_in: float | None = None,
        price_out: float | None = None,
        **generation: Any,
    ) -> None:
        preset = self.preset
        if preset is not None:
            self.name = preset
        self.model = str(model) if model else (SNAPSHOTS[preset] if preset else "")
        if not self.model:
            raise APIConfigError(
                "openai-compatible needs -M model=NAME: the model name the server serves (vLLM: --served-model-name)"
            )
        if preset is None and not base_url:
            raise APIConfigError("openai-compatible needs -M base_url=http://HOST:PORT/v1 (the server's /v1 address)")
        self.base_url = str(base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")
        self.api_key_env = str(api_key_env or "OPENAI_API_KEY")
        self.mmad = _flag(mmad, "mmad")
        self.take_generation(generation, self.name)
        self.generation.refuse(NOT_IN_THE_API, "the chat-completions API")

        def pick(value: Any, key: str, default: Any) -> Any:
            """An explicit -M value, else MMAD's setting under mmad=true, else adbench's default."""
            if value is not None:
                return value
            return MMAD_SETTINGS[key] if self.mmad else default

        self.detail = pick(detail, "detail", None)
        if self.detail is not None and self.detail not in DETAILS:
            raise APIConfigError(f"-M detail must be one of {', '.join(DETAILS)}, got {self.detail!r}")
        side = pick(max_side, "max_side", 1024)
        self.encoding = ImageEncoding(
            max_side=int(side) if side else None,  # -M max_side=0: no cap
            upscale=_flag(pick(upscale, "upscale", False), "upscale"),
            format=str(pick(image_format, "image_format", "png")).lower().replace("jpg", "jpeg"),
            quality=int(jpeg_quality),
        )
        self.system_prompt = system_prompt
        self.instruction = read_instruction(instruction_file, APIConfigError) if instruction_file else MMAD_INSTRUCTION
        self.reask_words = MMAD_REASK_WORDS if self.mmad else ()
        if int(concurrency) < 1:
            raise APIConfigError(f"-M concurrency must be at least 1, got {concurrency!r}")
        if float(timeout) <= 0:
            raise APIConfigError(f"-M timeout must be a positive number of seconds, got {timeout!r}")
        self.concurrency = int(concurrency)
        self.timeout = float(timeout)
        self.retry = RetryPolicy(int(max_retries), float(backoff_base), float(backoff_max))
        self.cache = ResponseCache(cache_dir or default_cache_dir()) if _flag(cache, "cache") else None
        self.price: Price | None = resolve_price(self.model, prices, price_in, price_out)

        self._secret = self._read_key(explicit=api_key_env is not None)
        try:
            import openai
            import tenacity  # noqa: F401 - the retries (retry.py)
        except ImportError as e:  # pragma: no cover - both come with the declared extra
            raise APIConfigError(f"the {e.name} package is missing: pip install 'adbench[api]'") from e
        self._openai = openai
        # The client's own retries are off: tenacity's (retry.py) honour Retry-After and count every request.
        self._client = openai.OpenAI(
            api_key=self._secret, base_url=self.base_url, timeout=self.timeout, max_retries=0
        )
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="adbench-api")
        self._stop = threading.Event()  # set on Ctrl-C / close: workers stop waiting to retry

    def generation_defaults(self) -> dict[str, Any]:
        return MMAD_DEFAULTS if self.mmad else API_DEFAULTS

    # -- the key -------------------------------------------------------------------
    def _read_key(self, explicit: bool) -> str:
        key = os.environ.get(self.api_key_env, "")
        if key:
            return key
        if self.preset is None and not explicit:
            # A local server (vLLM without --api-key) accepts any key; the client needs one.
            return "EMPTY"
        raise APIConfigError(
            f"no API key: set the environment variable {self.api_key_env} (adbench reads API keys only from "
            "the environment; -M api_key_env=NAME names another variable)"
        )

    def _scrub(self, text: str) -> str:
        """Remove the key from a text before it is recorded (servers may echo it in errors)."""
        if self._secret and self._secret != "EMPTY" and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return text

    def _scrub_body(self, body: Any) -> Any:
        """A parsed response body with the key removed from every string in it.

        A successful (200) body can echo the key too (a misconfigured proxy, a model
        that repeats its request), and bodies go into samples.jsonl and the cache.
        """
        if isinstance(body, str):
            return self._scrub(body)
        if isinstance(body, list):
            return [self._scrub_body(v) for v in body]
        if isinstance(body, dict):
            return {self._scrub(k): self._scrub_body(v) for k, v in body.items()}
        return body

    # -- requests --------------------------------------------------------------------
    def _content(self, query: Query, image_url: Callable[[str], str]) -> list[dict[str, Any]]:
        def image(path: str) -> dict[str, Any]:
            part: dict[str, Any] = {"url": image_url(path)}
            if self.detail is not None:
                part["detail"] = self.detail
            return {"type": "image_url", "image_url": part}

        if self.mmad:
            return [*(image(p) for p in query.images), {"type": "text", "text": mmad_text(query, self.instruction)}]
        segments = query.meta.get("segments")
        if not segments:  # a task without interleaving: images (references first), then the prompt
            return [*(image(p) for p in query.images), {"type": "text", "text": query.prompt}]
        parts = []
        for kind, value in segments:
            if kind == "text":
                parts.append({"type": "text", "text": str(value)})
            elif kind == "image":
                parts.append(image(str(value)))
            else:
                raise ValueError(f"query {query.id}: unknown segment kind {kind!r} (expected 'text' or 'image')")
        return parts

    def _body(self, query: Query, image_url: Callable[[str], str]) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": self._content(query, image_url)})
        return {"model": self.model, "messages": messages, **self._decoding_fields()}

    def _decoding_fields(self) -> dict[str, Any]:
        """The resolved decoding settings as request fields. The API always samples: greedy is sent as
        temperature 0, and sampling without a temperature sends none (the API's default)."""
        g = self.decoding()
        fields: dict[str, Any] = {"max_tokens": g.max_new_tokens}
        if not g.do_sample:
            fields["temperature"] = 0.0
        elif g.temperature is not None:
            fields["temperature"] = g.temperature
        for key, value in (("top_p", g.top_p), ("seed", g.seed), ("stop", list(g.stop) if g.stop else None)):
            if value is not None:
                fields[key] = value
        return fields

    def describe(self, query: Query) -> dict[str, Any]:
        """The request as the cache sees it: images by content hash plus the encoding settings."""
        body = self._body(query, lambda p: f"sha256:{content_hash(p)}")
        desc: dict[str, Any] = {"endpoint": self.base_url, "body": body}
        if query.images:
            desc["image_encoding"] = self.encoding.to_dict()
        return desc

    def _ask(self, query: Query, description: dict[str, Any], key: str) -> Response:
        """One query: encode, send, retry, cache the answer. Never raises: a fault becomes the Response's error."""
        try:
            return self._ask_with_retries(query, description, key)
        except Exception as e:  # noqa: BLE001 - an unforeseen fault fails this query only, and is reported
            return Response.failure(self._scrub(f"{type(e).__name__}: {e}"))

    def _reask(self, reply: dict[str, Any]) -> bool:
        text = (reply["text"] or "").lower()
        return any(word in text for word in self.reask_words)

    def _ask_with_retries(self, query: Query, description: dict[str, Any], key: str) -> Response:
        try:
            body = self._body(query, lambda p: data_url(p, self.encoding))
        except (ImageError, OSError, ValueError) as e:
            return Response.failure(f"cannot build the request for {query.id}: {e}")
        asked = Asked()
        try:
            answer = self.retry.retrying(self._stop)(self._request, body, asked)
        except Refused as e:  # every reply read like a refusal: MMAD's script keeps the last one whatever it says
            answer = e.answer
            asked.discarded.pop()
        except NotAskedAgain as e:  # not retried now; a 401/403 is asked again on resume
            return Response.failure(str(e), retryable=ask_again_on_resume(e.status), usage={"requests": asked.requests})
        except (AskAgain, Stopped) as e:
            why = asked.error
            if isinstance(e, Stopped):
                why += "; stopped before retrying"
            elif e.retry_after is not None and e.retry_after > self.retry.backoff_max:
                why += f"; the server asked to wait {e.retry_after:.0f}s (more than -M backoff_max)"
            n = asked.requests
            return Response.failure(f"{why} (after {n} request{'s' if n != 1 else ''})", retryable=True,
                                    usage={"requests": n})
        if self.cache is not None:
            self.cache.put(key, description, answer.payload)
        request_id = answer.raw.headers.get("x-request-id")
        meta = {"request_id": self._scrub(request_id) if isinstance(request_id, str) else None}
        return self._response(query, answer.reply, cached=False, requests=asked.requests, latency=answer.latency,
                              key=key, meta=meta, discarded=asked.discarded)

    def _request(self, body: dict[str, Any], asked: Asked) -> Answer:
        """One request. A fault worth another is AskAgain (its scrubbed text also in `asked.error`), a 4xx that
        is not is NotAskedAgain, and under mmad=true a reply that reads like a refusal is Refused."""
        openai = self._openai
        asked.requests += 1
        started = time.perf_counter()
        try:
            raw = self._client.chat.completions.with_raw_response.create(**body)
        except openai.APIStatusError as e:
            asked.error = self._scrub(f"HTTP {e.status_code}: {e.message}")
            if not is_transient_status(e.status_code):
                raise NotAskedAgain(asked.error, e.status_code) from None
            raise AskAgain(asked.error, parse_retry_after(dict(e.response.headers))) from None
        except openai.APITimeoutError:
            asked.error = f"timeout: no answer within {self.timeout:g}s"
            raise AskAgain(asked.error) from None
        except openai.APIConnectionError as e:
            asked.error = self._scrub(f"connection error: {e.__cause__ or e}")
            raise AskAgain(asked.error) from None
        latency = time.perf_counter() - started
        try:
            payload = self._scrub_body(json.loads(raw.http_response.text))
            reply = extract_reply(payload)
        except ValueError as e:  # a body that is not JSON, or JSON that is no chat completion (MalformedResponse)
            asked.error = self._scrub(f"malformed response body: {e}")
            raise AskAgain(asked.error) from None
        answer = Answer(raw, payload, reply, latency)
        if self._reask(reply):  # MMAD's script asks again when a reply reads like a refusal ("sorry", ...)
            asked.discarded.append(reply)
            asked.error = "every reply read like a refusal"
            raise Refused(answer)
        return answer

    def _response(
        self, query: Query, reply: dict[str, Any], *, cached: bool, requests: int, key: str,
        latency: float | None = None, meta: dict[str, Any] | None = None, discarded: Sequence[dict[str, Any]] = (),
    ) -> Response:
        replies = [*discarded, reply]
        pt, ct = reply["prompt_tokens"], reply["completion_tokens"]
        usage: dict[str, Any] = {"requests": requests, "cache_hits": int(cached)}
        cost = None
        if pt is not None and ct is not None:
            pt = sum(r["prompt_tokens"] or 0 for r in replies)
            ct = sum(r["completion_tokens"] or 0 for r in replies)
            cached_tokens = sum(r["cached_tokens"] for r in replies)
            usage.update(prompt_tokens=pt, completion_tokens=ct)
            if cached_tokens:
                usage["cached_prompt_tokens"] = cached_tokens
            if self.price is not None:
                cost = self.price.cost(pt, ct, cached_tokens)
                # a cached answer costs nothing now; its original tokens stay for the record
                usage["cost_usd"] = 0.0 if cached else cost
        if latency is not None:
            usage["latency_s"] = round(latency, 4)
        info: dict[str, Any] = {
            "cached": cached,
            "request_key": key[:16],
            "model": reply["model"],
            "finish_reason": reply["finish_reason"],
            "system_fingerprint": reply["system_fingerprint"],
            **(meta or {}),
        }
        if cached and cost is not None:
            info["original_cost_usd"] = cost
        if discarded:
            info["reasked"] = [r["text"] for r in discarded]
        if reply["text"] is None:  # the model refused: a reply without an answer, not a failure
            info["refusal"] = reply["refusal"]
            return Response(text="", answer=None, parse_status=ParseStatus.UNPARSED, usage=usage, meta=info)
        letter, status = parse_option(reply["text"], query.options)
        return Response(text=reply["text"], answer=letter, parse_status=status, usage=usage, meta=info)

    def predict(self, queries: Sequence[Query]) -> list[Response]:
        out: list[Response | None] = [None] * len(queries)
        jobs = []
        for i, q in enumerate(queries):
            try:
                description = self.describe(q)
            except (ImageError, OSError, ValueError) as e:
                out[i] = Response.failure(f"cannot build the request for {q.id}: {e}")
                continue
            key = request_key(description)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                try:
                    reply = extract_reply(self._scrub_body(hit["response"]))  # also entries cached before scrubbing
                    out[i] = self._response(q, reply, cached=True, requests=0, key=key)
                    continue
                except MalformedResponse:
                    pass  # an entry we cannot read is a miss; the fresh answer replaces it
            jobs.append((i, self._pool.submit(self._ask, q, description, key)))
        try:
            for i, fut in jobs:
                out[i] = fut.result()
        except BaseException:  # Ctrl-C: workers stop waiting to retry; queued queries are dropped
            self._stop.set()
            for _, fut in jobs:
                fut.cancel()
            raise
        return [r if r is not None else Response.failure("no response (internal error)") for r in out]

    # -- provenance --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything that determines the answers, and how they were fetched; never the key itself."""
        return {
            "preset": self.preset, "model": self.model, "base_url": self.base_url, "api_key_env": self.api_key_env,
            "mmad": self.mmad, "layout": "mmad" if self.mmad else "segments",
            "generation": self.decoding().to_dict(),
            "detail": self.detail, "image_encoding": self.encoding.to_dict(), "system_prompt": self.system_prompt,
            "price": None if self.price is None else self.price.to_dict(),
            "cache": None if self.cache is None else {"dir": str(self.cache.dir), "key_version": KEY_VERSION},
            "concurrency": self.concurrency, "timeout": self.timeout, "retry": self.retry.to_dict(),
            "reask_words": list(self.reask_words),
        }

    def prompt_text(self) -> str:
        return "\n".join(t for t in (self.system_prompt, self.instruction if self.mmad else None) if t)

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


class GPT41(OpenAIChatModel):
    preset = "gpt-4.1"


class GPT4o(OpenAIChatModel):
    preset = "gpt-4o"


class GPT4oMini(OpenAIChatModel):
    preset = "gpt-4o-mini"

