"""Recipes: shipped recipes load, overrides apply, mistakes name the key and value."""

from pathlib import Path

import pytest
import yaml

from cft.config import Recipe, load_recipe, recipe_from_dict
from cft.errors import CFTError

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_all_required_recipes_ship():
    names = {path.stem for path in RECIPES}
    assert {"minicpm-2b", "gemma-2b", "phi-2", "qwen2.5-0.5b", "smollm2-135m"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_shipped_recipe_loads_and_round_trips(path):
    recipe = load_recipe(path)
    again = recipe_from_dict(yaml.safe_load(recipe.to_yaml()), "saved")
    assert again.to_dict() == recipe.to_dict()


def test_minicpm_recipe_is_the_published_one():
    recipe = load_recipe(Path(RECIPES[0]).parent / "minicpm-2b.yaml")
    assert recipe.model.name_or_path == "openbmb/MiniCPM-2B-dpo-bf16"
    assert recipe.model.trust_remote_code is True
    assert (recipe.lora.r, recipe.lora.alpha, recipe.lora.dropout) == (8, 32, 0.1)
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]
    assert recipe.train.learning_rate == 5e-5 and recipe.train.warmup_steps == 100
    assert recipe.train.lr_scheduler == "cosine" and recipe.train.temperature == 0.05
    assert recipe.train.batch_size == 60 and recipe.train.bf16 is True


def test_set_overrides_fields(tmp_path):
    recipe = load_recipe(Path(RECIPES[0]).parent / "smollm2-135m.yaml",
                         ["train.learning_rate=1e-4", "lora.target_modules=q_proj,k_proj", "data.limit=10",
                          "model.prompt_template=Say: {}"])
    assert recipe.train.learning_rate == 1e-4
    assert recipe.lora.target_modules == ["q_proj", "k_proj"]
    assert recipe.data.limit == 10
    assert recipe.model.prompt_template == "Say: {}"


@pytest.mark.parametrize("override, message", [
    ("train.learnig_rate=1", r"--set train.learnig_rate=1: unknown key `train.learnig_rate`; did you mean train.learning_rate\?"),
    ("trian.learning_rate=1", r"--set trian.learning_rate=1: unknown key `trian.learning_rate`; did you mean train.learning_rate\?"),
    ("train.temperature=0", r"train.temperature must be > 0 \(got 0"),
    ("train.batch_size=abc", r"train.batch_size must be an integer \(got 'abc'\)"),
    ("model.pooling=cls", r"model.pooling must be one of \('last_token', 'mean'\)"),
    ("nonsense", r"--set expects section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(CFTError, match=message):
        load_recipe(None, [override])


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  name_or_path: x\n  poolng: last_token\n")
    with pytest.raises(CFTError, match=r"r.yaml: unknown key `model.poolng`"):
        load_recipe(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model:\n  name_or_path: x\n   bad: [\n")
    with pytest.raises(CFTError, match=r"r.yaml: line \d+ is not valid YAML"):
        load_recipe(path)


def test_missing_recipe_file():
    with pytest.raises(CFTError, match="recipe file not found"):
        load_recipe("nope.yaml")


def test_defaults_are_a_valid_recipe():
    assert isinstance(load_recipe(None), Recipe)


def test_warm_up_longer_than_the_run_is_a_warning(caplog):
    recipe = {"train": {"max_steps": 10, "warmup_steps": 50}}
    with caplog.at_level("WARNING", logger="cft"):
        recipe_from_dict(recipe, "r.yaml")
    assert "train.warmup_steps (50) >= train.max_steps (10)" in caplog.text


def test_prompts_per_role_and_the_old_single_template():
    recipe = load_recipe(None, ["model.query_template=query: {}", "model.document_template=passage: {}"])
    prompts = recipe.model.prompts()
    assert (prompts.query, prompts.document) == ("query: {}", "passage: {}")
    old = load_recipe(None, ["model.prompt_template=This sentence : \"{}\" means in one word:\""]).model.prompts()
    assert old.query == old.document == 'This sentence : "{}" means in one word:"'  # both roles, as before
    assert load_recipe(None, ["model.query_template=query: {}"]).model.prompts().document is None


@pytest.mark.parametrize("override, message", [
    ("model.query_template={} and {}", r"model.query_template must contain '\{\}' exactly once"),
    ("model.document_template=no slot", r"model.document_template must contain '\{\}' exactly once"),
    ("model.prompt_template={} {}", r"model.prompt_template must contain '\{\}' exactly once"),
])
def test_one_placeholder_rule_at_recipe_load(override, message):
    with pytest.raises(CFTError, match=message):
        load_recipe(None, [override])


def test_prompt_template_with_a_role_template_is_refused():
    with pytest.raises(CFTError, match="model.prompt_template sets the template of both roles"):
        load_recipe(None, ["model.prompt_template=a {}", "model.query_template=q {}"])


def test_a_template_fills_only_its_own_placeholder():
    from cft.modeling.prompts import apply_template

    assert apply_template("query: {}", "a set {} and {x}") == "query: a set {} and {x}"


def test_matryoshka_settings_load_and_round_trip(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("loss:\n  matryoshka_dims: [576, 256, 128, 64]\n  matryoshka_weights: [1, 1, 0.5, 0.5]\n")
    recipe = load_recipe(path)
    assert recipe.loss.matryoshka_dims == [576, 256, 128, 64] and recipe.loss.matryoshka_weights == [1, 1, 0.5, 0.5]
    assert recipe_from_dict(yaml.safe_load(recipe.to_yaml()), "saved").to_dict() == recipe.to_dict()
    assert load_recipe(None, ["loss.matryoshka_dims=256,64"]).loss.matryoshka_dims == [256, 64]
    assert load_recipe(None).loss.matryoshka_dims is None  # plain InfoNCE unless asked


@pytest.mark.parametrize("overrides, message", [
    (["loss.matryoshka_dims=[256, 0]"], r"loss.matryoshka_dims must be a list of integers >= 1"),
    (["loss.matryoshka_dims=[256, 256]"], r"loss.matryoshka_dims lists a dimension twice"),
    (["loss.matryoshka_dims=[256, 64]", "loss.matryoshka_weights=[1]"], r"loss.matryoshka_weights must be 2 numbers > 0"),
    (["loss.matryoshka_weights=[1]"], r"loss.matryoshka_weights is set but loss.matryoshka_dims is not"),
    (["loss.matryoshka_dim=[64]"], r"unknown key `loss.matryoshka_dim`"),
])
def test_bad_matryoshka_settings_name_the_field(overrides, message):
    with pytest.raises(CFTError, match=message):
        load_recipe(None, overrides)
