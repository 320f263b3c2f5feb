"""End-to-end speed of the `adfm` adapter on the Qwen2.5-VL-7B architecture, against plain transformers.

Random weights (no download): speeds are architecture-true, replies are meaningless.
In one call it

1. runs the reference measurement `../shared/bench/hf_generate_anchor.py` (plain
   `model.generate`, dynamic cache; found via $ANCHOR, else in shared/bench of the
   repository root or of the nearest folder above it) in a subprocess, with the same batch
   sizes, image side and number of new tokens, and reads its hf_anchor.json;
2. builds the same architecture in this process, wraps it in the adfm adapter
   (`QwenVLModel.from_components`, AD-FM prompt and parser) and times `predict` on
   synthetic queries end to end: image decoding, chat template, processor, generation,
   decoding, parsing and box mapping;
3. prints one JSON line per measurement and writes everything, with the card's name,
   to $OUT/gpu_adfm.json (or ./gpu_adfm.json).

Both sides generate exactly NEW_TOKENS tokens per sequence (EOS suppressed until then)
with sampling, as the anchor does; `ratio` = adapter images/s / anchor sequences/s at
the same batch size. The adapter's prompt is the AD-FM prompt (about 200 text tokens
more than the anchor's 120), so the ratio slightly favours the anchor.

TASK=multitask measures MMAD's other question types instead: each image pair (a normal
reference and the query image, MMAD's 1-shot) is asked QUESTIONS=5 questions (type,
place, object, structure and details of a defect, four options each) rendered as the
`mmad-*` tasks render theirs (`adbench.task.render_query`), read by `-M protocol=mmad`,
greedily, NEW_TOKENS=16 new tokens each (a trained model answers with a letter and stops;
the engine looks for finished rows every 16 steps).
The same queries run with the fast engine's shared prefixes (`-M share_prefix`, on by
default) and without (mode part `noshare`); `questions_s` per batch size, and on the
shared row `shared_vs_unshared` = its questions/s over the unshared row's. Default
batches 64, 128 and 256 (a size that does not fit in memory is recorded as an error).

    python benchmarks/gpu_adfm.py                    # 7B on a GPU
    TASK=multitask python benchmarks/gpu_adfm.py     # shared vs unshared prefixes, batches 64, 128, 256
    SIZE=tiny python benchmarks/gpu_adfm.py          # tiny model, CPU dry run (seconds)

Environment: SIZE (7b|tiny), TASK (binary|multitask), QUESTIONS (multitask: per image),
BATCHES (e.g. 6,64), SIDE (image side, px), NEW_TOKENS,
ROUNDS (timed batches per measurement), REFS (0: query image only, like the anchor; 1:
the 1-shot protocol's reference image too; multitask: 1), MODES (comma list of adapter
settings: dynamic, static, fast, each optionally +prefetch, fast also +noshare (no shared
prefixes) and +eager (no compiled decoding step); "dynamic" and "static" run
transformers' `generate` (static = static KV cache with a compiled decoding step),
"fast" runs adbench's own engine (`-M engine=fast`: adbench.models.engines.fast.decode, with
its decoding step compiled into a CUDA graph on a GPU; "fast+tuned": the same with
inductor's coordinate-descent kernel tuning)), CHECK (1: first compare the
fast engine's greedy replies with `generate`'s on a tiny fp32 model on this device, plainly,
with min_new_tokens and a repetition penalty, and with shared prefixes on a multitask batch),
ANCHOR (path, or "off"), TOKENIZER_DIR (a saved Qwen2.5
tokenizer folder, for machines without the dashscope package), OUT.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gpu_common import log, peak_gib, peak_kind, sync  # noqa: E402 - beside this file
from PIL import Image  # noqa: E402
from random_qwen import random_qwen  # noqa: E402

SIZE = os.environ.get("SIZE", "7b")
TINY = SIZE == "tiny"
TASK = os.environ.get("TASK", "binary")
MULTI = TASK == "multitask"
QUESTIONS = int(os.environ.get("QUESTIONS", "5"))
BATCHES = [int(b) for b in os.environ.get(
    "BATCHES", ("10" if MULTI else "2") if TINY else ("64,128,256" if MULTI else "6,64")).split(",")]
SIDE = int(os.environ.get("SIDE", "112" if TINY else "448"))
NEW_TOKENS = int(os.environ.get("NEW_TOKENS", "8" if TINY else ("16" if MULTI else "256")))
ROUNDS = int(os.environ.get("ROUNDS", "1" if TINY else "3"))
REFS = int(os.environ.get("REFS", "1" if MULTI else "0"))
MODES = os.environ.get("MODES", ("fast,fast+noshare" if TINY else "fast+prefetch,fast+prefetch+noshare") if MULTI
                       else ("dynamic,fast" if TINY else "dynamic,fast+prefetch")).split(",")
MODE_PARTS = {"dynamic", "static", "fast", "prefetch", "tuned", "noshare", "eager"}
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DTYPE = torch.bfloat16 if DEV == "cuda" else torch.float32
#: multitask: MMAD-like questions about one image pair (defect type, place, object, structure, details)
MULTITASK_QUESTIONS = [
    ("What is the type of the defect?", ["Scratch.", "Crack.", "Stain.", "There is no defect."]),
    ("Where is the defect located?", ["Top left.", "Center.", "Bottom right.", "There is no defect."]),
    ("What kind of object is shown in the image?", ["A bottle.", "A screw.", "A cable.", "A capsule."]),
    ("Is the structure of the object complete?", ["Yes.", "No, a part is missing.", "No, a part is bent.",
                                                  "No, a part is extra."]),
    ("What does the surface of the object look like?", ["Smooth and even.", "Scratched.", "Stained.",
                                                        "Dented in one place."]),
]

def find_anchor() -> Path | None:
    env = os.environ.get("ANCHOR")
    if env:
        return None if env == "off" else Path(env)
    for folder in (ROOT, *ROOT.parents):  # ./shared, ../shared, ../../shared (worktrees), ...
        cand = folder / "shared" / "bench" / "hf_generate_anchor.py"
        if cand.is_file():
            return cand
    return None


def run_anchor(tmp: Path) -> dict:
    """The plain-transformers reference, same card, same batch sizes and lengths (dynamic cache)."""
    script = find_anchor()
    if script is None:
        return {"status": "not run: hf_generate_anchor.py not found (set ANCHOR=path)"}
    env = dict(os.environ, SIZE=SIZE, MODES="dynamic", BATCHES=",".join(map(str, BATCHES)), SIDE=str(SIDE),
               NEW_TOKENS=str(NEW_TOKENS), TRAIN="0", OUT=str(tmp))
    t = time.time()
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"status": f"failed (exit {proc.returncode})", "stderr": proc.stderr[-2000:]}
    data = json.loads((tmp / "hf_anchor.json").read_text())
    data["status"] = "ok"
    data["wall_s"] = round(time.time() - t, 1)
    data["script"] = str(script)
    return data


def build_model() -> tuple:
    from adbench.models import tiny_qwen

    model = random_qwen(SIZE, DEV, DTYPE)
    pixels = SIDE * SIDE  # the SIDE x SIDE images go in unresized (SIDE is a multiple of 28)
    tok_dir = os.environ.get("TOKENIZER_DIR")
    processor = tiny_qwen.build_qwen_processor(min_pixels=28 * 28, max_pixels=pixels, tokenizer=tok_dir,
                                               cache_dir=None)
    return model, processor, pixels


def check_fast_engine(tmp: Path) -> dict:
    """Greedy replies of `-M engine=fast` (compiled on a GPU) against `generate`, tiny fp32 model, this device.

    Prompts of different lengths (two image sizes) so that left padding is exercised.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration

    from adbench.data.layout import AD_OPTIONS, AD_QUESTION
    from adbench.models import tiny_qwen
    from adbench.models.engines.qwen import QwenVLModel
    from adbench.schema import Query

    t = time.time()
    with torch.device(DEV):
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration._from_config(tiny_qwen.tiny_config(), dtype=torch.float32,
                                                                 attn_implementation="sdpa")
    model.eval()
    for p in model.parameters():
        if p.ndim >= 2:
            p.data.normal_(0, 0.2)  # as tiny_qwen.build_tiny_qwen_vl: replies differ from image to image
    model.generation_config.eos_token_id = [tiny_qwen.IM_END_ID, tiny_qwen.ENDOFTEXT_ID]
    processor = tiny_qwen.build_qwen_processor(tokenizer=os.environ.get("TOKENIZER_DIR"), cache_dir=None)
    rng = np.random.default_rng(1)
    queries = []
    for i, (w, h) in enumerate([(112, 112), (56, 84), (112, 112), (84, 56)] * 2):
        path = tmp / f"check_{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        queries.append(Query(id=f"c{i}", images=[str(path)], question=AD_QUESTION,
                             options=dict(AD_OPTIONS), prompt="", n_references=0))
    # batches of 3 mixing both prompt lengths (left padding); compiled, the last batch of 2 gets a filler row
    kwargs = dict(protocol="adfm", dtype="float32", device=DEV, batch_size=3, sort_by_length=False,
                  max_new_tokens=24, min_pixels=tiny_qwen.TINY_MIN_PIXELS, max_pixels=tiny_qwen.TINY_MAX_PIXELS)
    out: dict = dict(n=len(queries), compiled=DEV == "cuda")
    # plain greedy, then with the end tokens held back and a repetition penalty (both run in the graph)
    for name, extra in (("greedy", {}), ("min_new_and_penalty", dict(min_new_tokens=8, repetition_penalty=1.3))):
        reference = QwenVLModel.from_components(model, processor, engine="generate", **kwargs, **extra).predict(
            queries)
        fast = QwenVLModel.from_components(model, processor, engine="fast", compile=DEV == "cuda", **kwargs,
                                           **extra)
        got = [r.text for r in fast.predict(queries)]
        out[name] = dict(identical=sum(a.text == b for a, b in zip(reference, got)),
                         distinct_replies=len({r.text for r in reference}),
                         prompt_lengths=sorted({r.usage["prompt_tokens"] for r in reference}),
                         last_batch=fast._decoder.last_timing)
    # shared prefixes: three questions about each image (two image sizes), batches of 6 and a last one of 3
    grouped = [mmad_query(f"s{i}#{k}", q.images, question, options)
               for i, q in enumerate(queries[:3])
               for k, (question, options) in enumerate(MULTITASK_QUESTIONS[:3])]
    shared_kwargs = dict(kwargs, protocol="mmad", batch_size=6, max_new_tokens=12)
    reference = QwenVLModel.from_components(model, processor, engine="generate", **shared_kwargs).predict(grouped)
    fast = QwenVLModel.from_components(model, processor, engine="fast", compile=DEV == "cuda", **shared_kwargs)
    got = [r.text for r in fast.predict(grouped)]
    out["shared_prefix"] = dict(n=len(grouped), identical=sum(a.text == b for a, b in zip(reference, got)),
                                distinct_replies=len({r.text for r in reference}),
                                groups=[b.get("groups") for b in fast._decoder.timings][-2:])
    out["s"] = round(time.time() - t, 1)
    return out


def mmad_query(query_id: str, paths: list[str], question: str, texts: list[str]):
    """One multiple-choice question about an image set (references first, the query image last), rendered
    exactly as the MMAD tasks render theirs (`adbench.task.render_query`: interleaved images and text)."""
    from adbench.schema import Sample
    from adbench.task import render_query

    return render_query(Sample(id=query_id, dataset="synthetic", category="random", image=paths[-1], label=None,
                               qtype="benchmark", question=question, options=dict(zip("ABCD", texts)),
                               references=list(paths[:-1])))


def make_queries(n: int, tmp: Path) -> list:
    """n queries: one per image (binary), or QUESTIONS per image (multitask, the MMAD tasks' prompt)."""
    from adbench.data.layout import AD_OPTIONS, AD_QUESTION
    from adbench.schema import Query

    rng = np.random.default_rng(0)
    out: list = []
    i = 0
    while len(out) < n:
        paths = []
        for j in range(REFS + 1):
            p = tmp / f"img_{i}_{j}.png"
            Image.fromarray(rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)).save(p)
            paths.append(str(p))
        if not MULTI:
            out.append(Query(id=f"q{i}", images=paths, question=AD_QUESTION,
                             options=dict(AD_OPTIONS), prompt="", n_references=REFS))
        for k in range(QUESTIONS if MULTI else 0):
            question, texts = MULTITASK_QUESTIONS[k % len(MULTITASK_QUESTIONS)]
            out.append(mmad_query(f"q{i}#{k}", paths, question, texts))
        i += 1
    return out[:n]


def measure(model, processor, pixels: int, mode: str, bs: int, queries: list) -> dict:
    from adbench.models.engines.qwen import QwenVLModel

    parts = set(mode.split("+"))
    if DEV == "cuda" and "fast" in parts:
        import torch._dynamo
        import torch._inductor.config

        # "+tuned": inductor tunes its generated kernels' launch configurations (longer compile)
        tuned = "tuned" in parts
        if torch._inductor.config.coordinate_descent_tuning != tuned:
            torch._inductor.config.coordinate_descent_tuning = tuned
            torch._dynamo.reset()  # compiled code does not depend on this flag otherwise
    adapter = QwenVLModel.from_components(
        model, processor, base=f"random Qwen2.5-VL ({SIZE})", protocol="mmad" if MULTI else "adfm",
        dtype=str(DTYPE).split(".")[-1], device=DEV, batch_size=bs, max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS, do_sample=not MULTI,  # multitask: MMAD's greedy answers
        cache="static" if "static" in parts else "dynamic", engine="fast" if "fast" in parts else "generate",
        compile=bool(parts & {"static", "fast"}) and "eager" not in parts and DEV == "cuda",
        share_prefix="noshare" not in parts, prefetch="prefetch" in parts, min_pixels=28 * 28, max_pixels=pixels)
    warm = queries[:bs]
    for _ in range(2):  # warm-up (static mode compiles here)
        errors = [r.error for r in adapter.predict(warm) if r.error]
        if errors:  # do not time a setting that fails (its per-query retries would take long)
            raise RuntimeError(f"warm-up failed for {len(errors)}/{bs} queries: {errors[0]}")
    timed = queries[: bs * ROUNDS]
    if getattr(adapter, "_decoder", None) is not None:
        adapter._decoder.timings.clear()
    sync(DEV)
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    responses = adapter.predict(timed)
    sync(DEV)
    dt = time.perf_counter() - t
    adapter.close()
    decoder = getattr(adapter, "_decoder", None)
    batches = list(decoder.timings) if decoder is not None else []  # the fast engine's phases, per batch
    gpu_s = sum(b.get("prefill_ms", 0) + b.get("decode_ms", 0) for b in batches) / 1000
    failed = [r.error for r in responses if r.error]
    new_tokens = sum(r.usage.get("completion_tokens", 0) for r in responses if not r.error)
    rate = "questions_s" if MULTI else "images_s"  # queries per second (binary: one query per image)
    return dict(kind="ADFM", task=TASK, mode=mode, bs=bs, n=len(timed), side=SIDE, refs=REFS,
                prompt_tokens=responses[0].usage.get("prompt_tokens") if not failed else None,
                new_tokens=NEW_TOKENS, s=round(dt, 3), **{rate: round(len(timed) / dt, 3)},
                tok_s=round(new_tokens / dt, 1), failed=len(failed), first_error=failed[0] if failed else None,
                peak_gib=peak_gib(DEV), peak_kind=peak_kind(DEV),
                batches=batches or None,
                # wall time outside the engine's prefill and decoding phases (host work the GPU waited for)
                outside_engine_s=round(dt - gpu_s, 3) if batches else None)


def compare_sharing(rows: list[dict]) -> None:
    """On each multitask row with shared prefixes: its questions/s over the row without them
    (mode part `noshare`, the same batch size and other settings), once both are measured."""
    for row in rows:
        parts = set(row["mode"].split("+"))
        if "noshare" in parts or not row.get("questions_s"):
            continue
        other = next((r for r in rows if r["bs"] == row["bs"] and r.get("questions_s")
                      and set(r["mode"].split("+")) == parts | {"noshare"}), None)
        if other:
            row["shared_vs_unshared"] = round(row["questions_s"] / other["questions_s"], 3)


def main() -> None:
    import transformers

    if TASK not in ("binary", "multitask"):
        raise SystemExit(f"TASK must be binary or multitask, got {TASK!r}")
    for mode in MODES:  # check before the (long) anchor run
        if not set(mode.split("+")) <= MODE_PARTS:
            raise SystemExit(f"unknown MODES entry {mode!r} (parts: {', '.join(sorted(MODE_PARTS))})")

    out_dir = Path(os.environ.get("OUT", "."))
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="adbench-gpu-bench-"))
    check = check_fast_engine(tmp) if os.environ.get("CHECK", "1") == "1" else {"status": "skipped"}
    log("CHECK", check)
    anchor = run_anchor(tmp)  # first, in its own process: it frees its memory before ours is built
    log("ANCHOR", {k: v for k, v in anchor.items() if k != "rows"} | {"rows": anchor.get("rows", [])})
    model, processor, pixels = build_model()
    queries = make_queries(max(BATCHES) * ROUNDS, tmp)
    rows: list[dict] = []
    report = dict(size=SIZE, task=TASK, questions_per_image=QUESTIONS if MULTI else 1,
                  device=torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu",
                  torch=torch.__version__, transformers=transformers.__version__, side=SIDE,
                  new_tokens=NEW_TOKENS, rounds=ROUNDS, refs=REFS, check=check, anchor=anchor, rows=rows)
    for mode in MODES:
        for bs in BATCHES:
            try:
                row = measure(model, processor, pixels, mode, bs, queries)
            except Exception as e:  # noqa: BLE001 - e.g. compilation failing, out of memory: record it, go on
                row = dict(kind="ADFM", task=TASK, mode=mode, bs=bs, error=f"{type(e).__name__}: {e}"[:2000])
            gc.collect()  # the measurement's engine and its cache go before the next one is built
            if DEV == "cuda":
                torch.cuda.empty_cache()
            rate = row.get("questions_s", row.get("images_s"))
            base = next((r for r in anchor.get("rows", []) if r.get("kind") == "GEN" and r.get("bs") == bs), None)
            if base and rate:
                row["anchor_seq_s"] = base["seq_s"]
                row["anchor_prompt_len"] = base["prompt_len"]
                row["ratio"] = round(rate / base["seq_s"], 3)
            rows.append(row)
            compare_sharing(rows)
            log("ADFM", row)
            # after every measurement, so a run cut short still leaves what it measured
            (out_dir / "gpu_adfm.json").write_text(json.dumps(report, indent=1))
    (out_dir / "gpu_adfm.json").write_text(json.dumps(report, indent=1))
    print(out_dir / "gpu_adfm.json")


if __name__ == "__main__":
    main()
