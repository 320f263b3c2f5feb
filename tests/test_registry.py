import subprocess
import sys

import pytest

from adbench import registry
from adbench.registry import RegistryError, parse_assignments


def test_importing_adbench_and_listing_imports_no_heavy_library():
    code = (
        "import sys, adbench, adbench.registry, adbench.cli, adbench.runner, adbench.results;"
        "adbench.registry.models(); adbench.registry.tasks();"
        "print([m for m in ('torch', 'transformers', 'openai', 'open_clip', 'trl', 'vllm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_name_lists_valid_names():
    with pytest.raises(RegistryError, match="unknown model 'gpt-5'.*chance, .*patchcore"):
        registry.make_model("gpt-5")
    with pytest.raises(RegistryError, match="unknown task 'mmad-x'.*demo-binary"):
        registry.make_task("mmad-x")


def test_parse_assignments_reads_json_values():
    got = parse_assignments(["a=1", "b=0.5", "c=true", "d=hello", "e=[1,2]", "max-pixels=3", "f=a=b"], "-M")
    assert got == {"a": 1, "b": 0.5, "c": True, "d": "hello", "e": [1, 2], "max_pixels": 3, "f": "a=b"}
    with pytest.raises(RegistryError, match="-M 'oops': expected key=value"):
        parse_assignments(["oops"], "-M")


def test_run_seed_is_passed_only_to_factories_that_take_it():
    assert registry.make_model("chance", defaults={"seed": 7}).seed == 7
    assert registry.make_model("chance", defaults={"seed": 7}, seed=3).seed == 3


def test_third_party_adapter_through_entry_points(tmp_path):
    """A package that declares an `adbench.models` entry point shows up without touching adbench."""
    pkg = tmp_path / "site"
    (pkg / "myplugin").mkdir(parents=True)
    (pkg / "myplugin" / "__init__.py").write_text(
        "from adbench.models.baselines.chance import ChanceModel\n"
        "def make(seed=0):\n    m = ChanceModel(seed)\n    m.name = 'mine'\n    return m\n"
    )
    dist = pkg / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[adbench.models]\nmine = myplugin:make\n")
    code = (
        "from adbench import registry;"
        "e = registry.models()['mine']; print(e.target, e.source);"
        "print(registry.make_model('mine', seed=2).seed)"
    )
    env = {"PYTHONPATH": str(pkg)}
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    assert out == ["myplugin:make", "plugin", "myplugin", "2"]
