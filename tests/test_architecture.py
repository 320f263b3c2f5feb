"""The layering rule: cli -> registry -> (models | tasks | training) -> core, never backwards."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "adbench"
LAYERS = ("adbench.models", "adbench.tasks", "adbench.training")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_core_never_imports_models_tasks_or_training():
    core = [p for p in PKG.rglob("*.py") if p.relative_to(PKG).parts[0] not in ("models", "tasks", "training")]
    assert core
    for p in core:
        bad = [m for m in imports_of(p) if m.startswith(LAYERS)]
        assert not bad, f"{p} imports {bad}"


def test_models_never_import_tasks_or_training_and_tasks_never_import_models():
    for p in (PKG / "models").rglob("*.py"):
        assert not [m for m in imports_of(p) if m.startswith(("adbench.tasks", "adbench.training"))], p
    for p in (PKG / "tasks").rglob("*.py"):
        assert not [m for m in imports_of(p) if m.startswith(("adbench.models", "adbench.training"))], p


#: What each family of adbench/models may import from the others (the shared modules at models/ are open to all).
MODEL_FAMILIES = {
    "shared": (),
    "engines": ("engines",),
    "presets": ("engines", "presets"),
    "api": ("api",),
    "baselines": ("baselines",),
}


def test_model_families_import_one_way():
    """Shared modules import no family, engines no preset, API clients and baselines neither (docs/ARCHITECTURE.md)."""
    models = PKG / "models"
    seen = set()
    for p in models.rglob("*.py"):
        parts = p.relative_to(models).parts
        family = parts[0] if len(parts) > 1 else "shared"
        seen.add(family)
        families = {m.split(".")[2] for m in imports_of(p) if m.startswith("adbench.models.")
                    and m.split(".")[2] in MODEL_FAMILIES}
        assert families <= set(MODEL_FAMILIES[family]), f"{p} imports {sorted(families)}"
    assert seen == set(MODEL_FAMILIES)
