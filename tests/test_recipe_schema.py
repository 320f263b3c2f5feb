"""Recipe keys and `--set` values are checked against one schema (issue 14, items 3 and 9)."""

from __future__ import annotations

import pytest

from adbench.errors import UserError
from adbench.training.recipes import RecipeError, available, load_recipe


@pytest.mark.parametrize("name", available())
def test_every_shipped_recipe_passes_the_schema(name):
    recipe = load_recipe(name)
    assert recipe["name"] == name and "extends" not in recipe


def test_a_typo_in_a_recipe_file_is_an_error_listing_the_valid_keys(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: tiny\ngrpo:\n  lerning_rate: 1.0e-4\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: grpo.lerning_rate: unknown key lerning_rate; did you mean learning_rate?; "
                          "valid grpo keys (the fields of trl.GRPOConfig): ")
    assert "num_generations" in msg  # the valid keys: trl.GRPOConfig's fields
    assert isinstance(e.value, UserError)


def test_a_typo_in_a_parent_recipe_names_the_parent(tmp_path):
    parent = tmp_path / "parent.yaml"
    parent.write_text("extends: tiny\nlora:\n  rr: 8\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {parent}\ndescription: child\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(child))
    assert str(e.value) == f"{parent}: lora.rr: unknown key rr; did you mean r?; valid lora keys: r, alpha, dropout, target"


def test_unknown_sections_are_errors(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: tiny\ngrpoo:\n  beta: 0.1\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(str(path))
    assert str(e.value).startswith(f"{path}: grpoo: unknown key grpoo; did you mean grpo?; valid recipe keys: extends, ")


@pytest.mark.parametrize("item,message", [
    ("lora.rr=8", "--set lora.rr: unknown key rr; did you mean r?; valid lora keys: r, alpha, dropout, target"),
    ("rewards.alpah=0.9", "--set rewards.alpah: unknown key alpah; did you mean alpha?; valid rewards keys: "),
    ("grpo.lerning_rate=1e-4", "--set grpo.lerning_rate: unknown key lerning_rate; did you mean learning_rate?"),
    ("grpoo.beta=0.1", "--set grpoo: unknown key grpoo; did you mean grpo?; valid recipe keys: "),
    ("grpo.beta=abc", "--set grpo.beta: expected a number, got 'abc'"),
    ("grpo.bf16=maybe", "--set grpo.bf16: expected true or false or null, got 'maybe'"),
    ("grpo.max_steps=2.5", "--set grpo.max_steps: expected an integer, got '2.5'"),
    ("lora.r=eight", "--set lora.r: expected an integer, got 'eight'"),
    ("protocol.stages=three", "--set protocol.stages: expected one of multi, one, got 'three'"),
    ("vllm.enabled=sometimes", "--set vllm.enabled: expected one of auto or true or false, got 'sometimes'"),
    ("data.task_args.shots=x", "--set data.task_args.shots: expected an integer, got 'x'"),
    ("data.task_args.boxs=false", "--set data.task_args: task 'demo-binary' does not take -T boxs; it takes: "),
    ("data.task=no-such-task", "--set data.task: unknown task 'no-such-task'; valid tasks: cross-dagm, "),
])
def test_set_typos_and_bad_values_are_refused(item, message):
    with pytest.raises(RecipeError) as e:
        load_recipe("tiny", [item])
    assert str(e.value).startswith(message), str(e.value)


def test_set_values_are_typed_from_the_schema():
    r = load_recipe("tiny", ["grpo.bf16=no", "grpo.beta=0.1", "grpo.save_steps=3", "vllm.enabled=off",
                             "lora.r=4", "rewards.alpha=1", "grpo.report_to=[wandb]", "data.task_args.shots=0",
                             "sft_warmup.limit=null", "grpo.learning_rate=2e-5"])
    assert r["grpo"]["bf16"] is False and r["grpo"]["beta"] == 0.1 and r["vllm"]["enabled"] is False
    assert r["lora"]["r"] == 4 and r["rewards"]["alpha"] == 1.0 and isinstance(r["rewards"]["alpha"], float)
    assert r["grpo"]["report_to"] == ["wandb"] and r["data"]["task_args"]["shots"] == 0
    assert r["sft_warmup"]["limit"] is None and r["grpo"]["learning_rate"] == 2e-5
    assert load_recipe("tiny", ["vllm.enabled=auto"])["vllm"]["enabled"] == "auto"
    assert load_recipe("tiny", ["sft_warmup=null"])["sft_warmup"] is None


def test_print_config_refuses_typos(capsys):
    from adbench.cli import main

    assert main(["train", "--recipe", "tiny", "--set", "lora.rr=8", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("adbench: error: --set lora.rr: unknown key rr") and err.count("\n") == 1


def test_list_recipes_shows_each_description(capsys):
    from adbench.cli import main

    assert main(["list", "recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == available()
    tiny = next(line for line in lines if line.startswith("tiny "))
    assert tiny.split(None, 1)[1] == load_recipe("tiny")["description"]
    crossdataset = next(line for line in lines if line.startswith("release-crossdataset "))
    assert crossdataset.split(None, 1)[1] == load_recipe("release-crossdataset")["description"]
