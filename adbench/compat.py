"""Version checks for the library internals adbench relies on, done once, before the first use.

pyproject.toml declares the range of each dependency that CI tests (the newest releases and
the floors of `.ci/floors.txt`; README, "Tested dependency ranges"). pip enforces it on
install, but an environment can still leave it: `pip install -U trl` upgrades past the
pin with only a warning, and `--no-deps` installs or hand-made environments skip the
check altogether. Where adbench reaches into a library's internals (transformers'
M-RoPE index, cache and attention interfaces; TRL's config fields and trainer hooks) a
version outside the tested range would fail as an `AttributeError` or `TypeError` deep
in a batch or a training step. Each function here checks the installed versions for one
such use, once per process (cached), and raises `UnsupportedVersionError`, a UserError
(one line from the CLI, exit 2), naming the package, the installed version and the
supported range.

Every check takes optional version strings, so tests exercise the messages without
installing another release. Reading a version imports nothing (package metadata only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import metadata

from adbench.errors import UserError


class UnsupportedVersionError(UserError):
    """An installed library is outside the range adbench supports for what was asked of it."""


def parse_version(text: str) -> tuple[int, ...]:
    """The release numbers of a version string: "5.3.0" -> (5, 3, 0); "2.5.1+cu124", "5.3.0rc1" -> (2, 5, 1), (5, 3, 0).

    Pre-release, dev and local parts are ignored (a release candidate counts as its release).
    Parsed by `packaging` (installed with transformers, scikit-image and matplotlib).
    """
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text).release
    except InvalidVersion:
        raise ValueError(f"not a version: {text!r}") from None


@dataclass(frozen=True)
class Supported:
    """A package's supported versions: at least `floor`, and below `below` when set."""

    package: str  # the distribution name pip knows
    floor: str
    below: str | None = None

    def spec(self) -> str:
        """The range as pip writes it: `trl>=1.0,<1.17`."""
        return f"{self.package}>={self.floor}" + (f",<{self.below}" if self.below else "")

    def admits(self, version: str) -> bool:
        """Whether `version`'s release numbers (`parse_version`) lie in the range."""
        from packaging.specifiers import SpecifierSet

        release = ".".join(map(str, parse_version(version)))
        return SpecifierSet(self.spec().removeprefix(self.package)).contains(release)


# The ranges the checks enforce. tests/test_compat.py keeps them equal to pyproject.toml's and
# to the floors CI installs (.ci/floors.txt). Why each floor is what it is: README.
TRANSFORMERS = Supported("transformers", "5.6")
TORCH = Supported("torch", "2.8")
TRL = Supported("trl", "1.0", below="1.17")
PEFT = Supported("peft", "0.18")
TIKTOKEN = Supported("tiktoken", "0.12")
DEEPSPEED = Supported("deepspeed", "0.19.8", below="0.20")
#: vLLM 0.20 is the first to admit transformers 5 (>=5.5.1); TRL 1.16 drives 0.22 ... 0.31 (its `vllm` extra)
VLLM = Supported("vllm", "0.22", below="0.32")


def installed_version(package: str) -> str | None:
    """The installed version of a distribution (from its metadata, nothing imported), or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def require(supported: Supported, use: str, version: str | None = None) -> None:
    """Raise UnsupportedVersionError unless `version` (default: the installed one) is in `supported`.

    `use` says what needs the range, for the message ("the fast engine (-M engine=fast) calls ...").
    A package that is not installed is not this function's concern (its import fails with its name).
    """
    found = installed_version(supported.package) if version is None else version
    if found is None or supported.admits(found):
        return
    raise UnsupportedVersionError(
        f"{use} needs {supported.spec()}, but {supported.package} {found} is installed; "
        f"pip install '{supported.spec()}' (the range adbench is tested with: README, Tested dependency ranges)")


# ---------------------------------------------------------------- one check per internal


def _check(use: str, wanted: tuple[tuple[Supported, str | None], ...]) -> None:
    """Each (range, version) pair; with no version given at all, the installed ones, once per process."""
    if all(version is None for _, version in wanted):
        _check_installed(use, tuple(supported for supported, _ in wanted))
        return
    for supported, version in wanted:
        require(supported, use, version)


@functools.cache  # a failed check is not cached: it raises again, as it should
def _check_installed(use: str, ranges: tuple[Supported, ...]) -> None:
    for supported in ranges:
        require(supported, use)


def fast_engine(transformers: str | None = None, torch: str | None = None) -> None:
    """The fast Qwen2.5-VL engine (`adbench.models.engines.fast`).

    It calls the model's `get_rope_index(input_ids, mm_token_type_ids, ...)` (that
    signature from transformers 5.3 on), registers an attention and a mask function in
    `AttentionInterface` / `masking_utils.AttentionMaskInterface`, hands the model a
    cache object of its own that keeps no length (5.3's text model asks the cache for
    `get_seq_length()`; from 5.4 it takes the positions it is given), and takes the
    positions `get_rope_index` gives, which are right from 5.6 on (5.4 and 5.5 give an
    image after the first token a temporal position of start x time interval, so the
    fast engine's decoding positions, derived from the largest one, were off). Its decoding step
    compiles as one graph (a CUDA graph on a GPU) from torch 2.8 on: 2.6's dynamo cannot
    trace transformers 5's forward wrappers, 2.7's traces the float sampling settings as
    tensors and breaks the graph where the step branches on them.
    """
    _check("the fast Qwen2.5-VL engine (-M engine=fast)", ((TRANSFORMERS, transformers), (TORCH, torch)))


def tokenizer_conversion(transformers: str | None = None, tiktoken: str | None = None) -> None:
    """The tiny Qwen2.5-VL's tokenizer, converted from `qwen.tiktoken` (`adbench.models.tiny_qwen`).

    transformers 4.x's `TikTokenConverter` fails on a converter built without special
    tokens (`TypeError: 'NoneType' object is not iterable`); tiktoken before 0.12 reads
    even a local rank file through the optional `blobfile` package.
    """
    _check("the tiny Qwen2.5-VL's tokenizer conversion", ((TRANSFORMERS, transformers), (TIKTOKEN, tiktoken)))


def training(trl: str | None = None, transformers: str | None = None, peft: str | None = None,
             torch: str | None = None) -> None:
    """`adbench train` and its SFT warm-up (`adbench.training`).

    The recipes were checked against GRPOConfig's fields and defaults of TRL 1.0 to 1.16
    (pyproject.toml); the warm-up overrides SFTTrainer's `compute_loss`, the trainer adds
    TrainerCallbacks and reads transformers' checkpoint layout on resume, and LoRA goes
    through peft's LoraConfig with a regex target (peft before 0.18 does not import under
    transformers 5: it imports the removed `HybridCache`); TRL 1.0 imports torch 2.6's
    `FSDPModule` (the declared floor, 2.8, is the fast engine's).
    """
    _check("adbench train", ((TRL, trl), (TRANSFORMERS, transformers), (PEFT, peft), (TORCH, torch)))


def deepspeed_zero2(deepspeed: str | None = None) -> None:
    """Training under `accelerate launch --config_file adbench/training/accelerate_zero2.yaml`.

    ds_zero2.json's keys and "auto" values are the ones DeepSpeed 0.19's config parser
    accepts (tests/test_deepspeed_config.py runs that parser); a later minor release may
    rename or reject them at the first step, after the model has loaded on every GPU.
    """
    _check("adbench train with DeepSpeed ZeRO-2", ((DEEPSPEED, deepspeed),))


def trl_vllm_range(trl_requirements: list[str] | None = None) -> str | None:
    """The vLLM versions the installed TRL drives its rollouts with: its `vllm` extra's specifier, e.g. ">=0.22.0,<=0.31.0".

    Read from TRL's package metadata (`trl_requirements` replaces it in tests); None when TRL
    declares no such extra or is not installed.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    if trl_requirements is None:
        try:
            trl_requirements = metadata.requires("trl") or []
        except metadata.PackageNotFoundError:
            return None
    for line in trl_requirements:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "vllm" and requirement.marker is not None \
                and requirement.marker.evaluate({"extra": "vllm"}):
            return str(requirement.specifier)
    return None


def training_with_vllm(vllm: str | None = None, trl: str | None = None,
                       trl_requirements: list[str] | None = None) -> None:
    """`adbench train` with vLLM rollouts (recipe `vllm.enabled`): TRL calls vLLM's engine internals.

    Two ranges must hold: adbench's (`VLLM`, pyproject.toml) and the one the installed TRL
    was written against (its `vllm` extra; TRL itself only warns outside it, and then fails
    inside the first rollout). TRL 1.0 drives vLLM 0.10.2 ... 0.17.1, none of which runs
    with transformers 5, so vLLM rollouts need a newer TRL within adbench's range.
    """
    from packaging.specifiers import SpecifierSet

    use = "adbench train with vLLM rollouts"
    _check(use, ((VLLM, vllm),))
    found = installed_version("vllm") if vllm is None else vllm
    trl_version = installed_version("trl") if trl is None else trl
    spec = trl_vllm_range(trl_requirements)
    if found is None or spec is None or SpecifierSet(spec).contains(found, prereleases=True):
        return
    raise UnsupportedVersionError(
        f"{use}: trl {trl_version} drives vllm{spec} (its vllm extra), but vllm {found} is installed; "
        f"pip install -U '{TRL.spec()}' for a TRL that drives {VLLM.spec()}, or --set vllm.enabled=false")
