"""Model weights on this machine, checked before any library reads them.

Two rules, one place each.

Safe files. Weights are read from safetensors only. A `.safetensors` file is checked to
be one (`check_safetensors_file`: the safetensors library parses and validates its
header and never unpickles) before transformers, PEFT, open_clip or adbench read it,
so a pickle under that name, or a file cut short by a kill, is refused by name as one
line instead of failing deep inside a library. `check_safetensors_folder` applies it to a
model folder, `check_adapter_folder` to a PEFT adapter folder.

Missing weights. `locate_pretrained` turns a `-M base=` (or recipe `base:`) value into
what `from_pretrained` reads, locally and offline first:

- a local folder (an existing path, or anything spelled as one): checked; absent, an
  error at once;
- a hub id whose snapshot is in the Hugging Face cache (HF_HOME, HF_HUB_CACHE): that
  folder, read without any hub request;
- a hub id not (fully) in the cache: with HF_HUB_OFFLINE=1 an error at once; otherwise
  one request to the hub without retries (`hub_problem`) decides: reachable, the hub id
  is returned and `from_pretrained` downloads it as usual; unreachable or unknown, an
  error at once.

Without this, transformers asked the hub for each file five times with back-off (about
50 s with no network) and ended in a 100-line traceback. The errors name the model id
and every way to supply it (`MissingWeightsError`).
"""

from __future__ import annotations

import os
from pathlib import Path

from adbench.errors import MissingFileError, UserError

#: Suffixes of pickled weights (torch.save and friends): never loaded, named in errors.
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: The one hub request that decides whether a download can work (seconds; no retries).
PROBE_TIMEOUT_S = 10.0
CONVERT = ("adbench reads weights from safetensors only and never unpickles them; convert it where you trust "
           "it (load it there and save with safetensors.torch.save_file, or save_pretrained(safe_serialization=True))")


class UnsafeCheckpointError(UserError):
    """Weights that could only be loaded by unpickling: pickled files, or a pickle named `.safetensors`."""


class MissingWeightsError(MissingFileError):
    """Weights that are not on this machine (and cannot be downloaded now); the message says how to supply them."""


# --------------------------------------------------------------------------- safe files


def _pickle_kind(path: Path) -> str | None:
    """What a file that is not safetensors looks like, from its first bytes (read, never unpickled)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive, as torch.save writes: a pickle inside"
    if head[:1] == b"\x80":
        return "it is a Python pickle"
    return None


def check_safetensors_file(path: str | Path, what: str = "weights") -> Path:
    """`path`, after checking it is a whole safetensors file (header parsed and checked against the file size)."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise MissingWeightsError(f"{what} file not found: {p}")
    try:
        with safe_open(str(p), framework="pt"):  # reads the header only; safetensors has no pickle path
            pass
    except (SafetensorError, OSError) as e:
        kind = _pickle_kind(p)
        detail = f"{kind}; {CONVERT}" if kind else f"{e}; a download or copy cut short?"
        raise UnsafeCheckpointError(f"{p}: not a safetensors file ({detail})") from None
    return p


def _missing_shards(folder: Path) -> list[str]:
    """Shards a sharded checkpoint's index lists that are not in the folder (a download cut short)."""
    import json

    missing: set[str] = set()
    for index in folder.glob("*.safetensors.index.json"):
        try:
            files = set(json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).values())
        except (ValueError, OSError, AttributeError):
            continue  # transformers reports an unreadable index itself
        missing |= {f for f in files if not (folder / f).is_file()}
    return sorted(missing)


def check_safetensors_folder(folder: str | Path, what: str = "model") -> Path:
    """A local model folder whose weights are safetensors (every one checked); refuses pickled-only folders."""
    path = Path(folder)
    if not path.is_dir():
        raise MissingWeightsError(f"{what} folder not found: {path}")
    weights = sorted(path.glob("*.safetensors"))
    missing = _missing_shards(path)
    if missing:
        raise MissingWeightsError(f"{what} folder {path} lacks {len(missing)} weight file(s) its index lists "
                                  f"({', '.join(missing[:3])}); an interrupted download?")
    if weights:
        for f in weights:
            check_safetensors_file(f, what)
        return path
    pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLED_SUFFIXES)
    if pickled:
        raise UnsafeCheckpointError(
            f"{what} folder {path} holds only pickled weights ({', '.join(pickled[:3])}); {CONVERT}")
    raise MissingWeightsError(f"{what} folder {path} has no .safetensors weights")


ADAPTER_HINT = "-M adapter= takes the folder `adbench train --out OUT` writes, OUT/adapter"


def check_adapter_folder(folder: str | Path) -> Path:
    """A PEFT adapter folder with adapter_config.json and a real adapter_model.safetensors."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise MissingWeightsError(f"adapter folder not found: {path} ({ADAPTER_HINT})")
    if not (path / "adapter_config.json").is_file():
        raise MissingWeightsError(f"adapter folder {path} has no adapter_config.json, so it is not a PEFT adapter "
                                  f"({ADAPTER_HINT})")
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        found = sorted(p.name for p in path.iterdir())
        error = UnsafeCheckpointError if any(Path(f).suffix in PICKLED_SUFFIXES for f in found) else \
            MissingWeightsError
        raise error(f"adapter folder {path} has no adapter_model.safetensors (found: {', '.join(found) or 'nothing'}); "
                    "adbench loads adapters from safetensors only")
    check_safetensors_file(weights, "adapter")
    return path


def check_weights_file(path: str | Path, what: str = "weights") -> Path:
    """A local weights file named by the user: it must exist; a `.safetensors` one must be one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise MissingWeightsError(f"{what} file not found: {p}")
    if p.suffix == ".safetensors":
        check_safetensors_file(p, what)
    return p


# --------------------------------------------------------------------------- missing weights


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as huggingface_hub reads it, also when set after its import."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any((f or "").strip().upper() in ("1", "ON", "YES", "TRUE") for f in flags)


def hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_problem(repo_id: str, filename: str = "config.json") -> str | None:
    """Why the hub cannot give `repo_id` now (offline, unreachable, no such repository), or None when it can.

    One HEAD request for `filename`, PROBE_TIMEOUT_S, no retries: it only decides whether
    a download is worth starting; the download itself is left to the library.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    if offline():
        return "HF_HUB_OFFLINE is set, so it is not downloaded"
    hub = f"the hub ({constants.ENDPOINT})"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=PROBE_TIMEOUT_S)
    except GatedRepoError:
        return f"{hub} lets only approved users download it: accept its licence there and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return f"{hub} has no such model (or it is private: log in with `hf auth login`)"
    except EntryNotFoundError:
        return None  # the repository is there; the library names what it lacks
    except Exception as e:  # noqa: BLE001 - DNS, refused, timeout, proxy, HTTP 5xx: the hub cannot be asked now
        return f"{hub} cannot be reached ({type(e).__name__}: {e})"
    return None


def missing_message(label: str, repo_id: str, problem: str, supply: str) -> str:
    """One line: what is missing, why, and every way to supply it."""
    return (f"{label} is not on this machine: {problem}. Supply it: {supply}, or put it in the Hugging Face "
            f"cache (where there is network: `hf download {repo_id}`, `huggingface-cli download {repo_id}` with "
            "an older huggingface_hub; then copy that cache here and point HF_HOME at it); with the cache in "
            "place, HF_HUB_OFFLINE=1 keeps adbench from asking the hub")


def _spelled_as_path(name: str) -> bool:
    """A value meant as a folder: path-like spelling, or not a valid hub id."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if name.startswith(("/", ".", "~")) or "\\" in name:
        return True
    try:
        validate_repo_id(name)
    except HFValidationError:
        return True
    return False


def cached_snapshot(repo_id: str) -> Path | None:
    """The hub cache's snapshot folder of `repo_id` (default revision) when its config.json is there."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def cached_file(repo_id: str, filenames: list[str]) -> str | None:
    """The first of `filenames` of `repo_id` found in the hub cache."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str):
            return found
    return None


def locate_pretrained(name: str | Path, what: str = "base model", supply: str = "-M base=DIR") -> str:
    """What `from_pretrained` should read for `name`: a checked local folder, or a hub id it can download.

    `supply` is how this command takes a local folder (`-M base=DIR`, `--set base=DIR`);
    see the module docstring for the order of the checks.
    """
    text = str(name)
    local = Path(text).expanduser()
    if local.exists() or _spelled_as_path(text):
        return str(check_safetensors_folder(local.absolute(), what))
    snapshot = cached_snapshot(text)
    cache = f"it is not in the Hugging Face cache ({hub_cache()})"
    if snapshot is not None:
        try:
            return str(check_safetensors_folder(snapshot, f"{what} {text!r} in the hub cache"))
        except MissingWeightsError as e:  # only part of it was downloaded: the hub may give the rest
            cache = f"the Hugging Face cache holds only part of it ({e})"
    problem = hub_problem(text)
    if problem:
        raise MissingWeightsError(missing_message(f"{what} {text!r}", text, f"{cache} and {problem}",
                                                  f"{supply} (a local folder with its files)"))
    return text


def require_hub_file(label: str, repo_id: str, filenames: list[str], supply: str) -> None:
    """Fail at once, with the remedies, when none of `filenames` of `repo_id` is cached and the hub cannot give one.

    For libraries that download a single file themselves (open_clip's pretrained tags).
    """
    if cached_file(repo_id, filenames):
        return
    problem = hub_problem(repo_id, filenames[0])
    if problem:
        raise MissingWeightsError(missing_message(
            label, repo_id, f"it is not in the Hugging Face cache ({hub_cache()}) and {problem}", supply))
