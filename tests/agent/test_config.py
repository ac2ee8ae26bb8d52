"""Run config: validation errors, overrides, TOML round trip, the config hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import (
    HASH_EXCLUDED,
    ConfigError,
    RunConfig,
    config_hash,
    config_to_toml,
    load_config,
    parse_config,
    parse_override,
)

RUNS = Path(__file__).resolve().parents[2] / "runs"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


def test_every_bad_field_is_named_in_one_error(tmp_path):
    p = write(tmp_path, """
seed = "x"
[data]
limit = 0
colour = "red"
[model]
backend = "nope"
[sampling]
temperature = -1
[budget]
rounds = 0
""")
    with pytest.raises(ConfigError) as info:
        load_config(p, ["prompt.bogus=3", "sampling.top_p=2"])
    err = info.value
    text = str(err)
    assert str(p) in text
    named = {line.split(":")[0] for line in err.problems}
    assert named == {
        "seed", "data.limit", "data.colour", "model.backend", "sampling.temperature",
        "budget.rounds", "prompt.bogus", "sampling.top_p",
    }
    # What is allowed is said, not just that something is wrong.
    by_field = {line.split(":")[0]: line for line in err.problems}
    assert "'transformers'" in by_field["model.backend"] and "'replay'" in by_field["model.backend"]
    assert "allowed here:" in by_field["data.colour"] and "dataset" in by_field["data.colour"]
    assert "greater than or equal to 1" in by_field["budget.rounds"]
    assert all(f"  - {line}" in text for line in err.problems)


def test_toml_syntax_error_names_the_file(tmp_path):
    p = write(tmp_path, "seed = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(p)
    assert str(p) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_overrides_parse_toml_literals_else_strings(tmp_path):
    p = write(tmp_path, 'name = "a"\n[sampling]\ntemperature = 1.0\n')
    cfg = load_config(p, [
        "sampling.temperature=0.25", "data.tasks=[\"00576224\", \"66e6c45b\"]", "data.lenient=true",
        "model.model=some/model-name", "seed=7", "name=\"b\"",
    ])
    assert cfg.sampling.temperature == 0.25
    assert cfg.data.tasks == ["00576224", "66e6c45b"]
    assert cfg.data.lenient is True
    assert cfg.model.model == "some/model-name"  # not a TOML literal: taken as a string
    assert cfg.seed == 7 and cfg.name == "b"


def test_unknown_override_keys_are_errors(tmp_path):
    p = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(p, ["sampling.temprature=0.5", "nosuch.table.key=1", "noequals"])
    problems = info.value.problems
    assert any(line.startswith("sampling.temprature: unknown field") for line in problems)
    assert any(line.startswith("nosuch: unknown field") for line in problems)
    assert any("noequals" in line and "key.path=value" in line for line in problems)


def test_parse_override_value_forms():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=x=y") == (["a"], "x=y")
    assert parse_override('a="3"') == (["a"], "3")
    with pytest.raises(ValueError):
        parse_override("a..b=1")


def test_cross_field_backend_check_is_reported_on_the_model_table(tmp_path):
    p = write(tmp_path, '[model]\nbackend = "openai"\n')
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert any(line.startswith("model:") and "base_url" in line for line in info.value.problems)


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(RUNS / "vllm-qwen-coder-7b.toml", ["data.tasks=[\"a\", \"b\"]", "sampling.stop=[\"```\\n\"]"])
    text = config_to_toml(cfg)
    back = load_config(write(tmp_path, text))
    assert back == cfg
    assert config_hash(back) == config_hash(cfg)


@pytest.mark.parametrize("name", ["quickstart.toml", "server.toml", "vllm-qwen-coder-7b.toml", "vllm-qwen-coder-7b-rex.toml",
                                  "vllm-qwen-coder-7b-evolve.toml", "vllm-qwen-coder-7b-mix.toml"])
def test_example_configs_parse_and_validate(name):
    cfg = load_config(RUNS / name)
    assert isinstance(cfg, RunConfig)


def test_example_configs_say_what_they_promise():
    quick = load_config(RUNS / "quickstart.toml")
    assert quick.model.backend == "transformers" and quick.model.model == "qwen2.5-coder-0.5b" and quick.model.device == "cpu"
    assert quick.data.dataset == "arc1:train" and quick.data.tasks and len(quick.data.tasks) <= 5
    # Small models need the code-only prompt and the prefilled function head to reach the sandbox.
    assert quick.prompt.style == "code" and quick.prompt.prefill.endswith("def transform(grid):\n")
    # offer_scipy is left to the machine: the run's config records what was used, so a later install changes no replay.
    assert quick.prompt.offer_scipy is None
    # Worst-case tokens of the whole quickstart; the README has the measured time.
    per_task = quick.sampling.samples_per_prompt * quick.sampling.max_tokens * (
        quick.budget.first_prompts + (quick.budget.rounds - 1) * quick.budget.refine_prompts)
    assert per_task * len(quick.data.tasks) <= 6_200
    vllm = load_config(RUNS / "vllm-qwen-coder-7b.toml")
    assert vllm.model.backend == "vllm" and vllm.model.model == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert vllm.sampling.min_p == 0.05 and vllm.sampling.temperature == 1.0
    assert 32 <= vllm.sampling.samples_per_prompt <= 64
    server = load_config(RUNS / "server.toml")
    assert server.model.backend == "openai" and server.model.base_url == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("strategy, programs", [("rex", 6000), ("evolve", 1500), ("mix", 1500)])
def test_strategy_configs_carry_the_anchor_budgets(strategy, programs):
    cfg = load_config(RUNS / f"vllm-qwen-coder-7b-{strategy}.toml")
    assert cfg.search.strategy.kind == strategy and cfg.model.backend == "vllm" and "7B" in cfg.model.model
    b, s = cfg.budget, cfg.sampling
    parts = [cfg.search.strategy] if strategy != "mix" else [cfg.search.strategy.rex, cfg.search.strategy.evolve]
    per_refine = {p.refine_samples or s.samples_per_prompt for p in parts}
    assert per_refine == {4}  # SOAR's completions per refinement prompt
    planned = b.first_prompts * s.samples_per_prompt + (b.rounds - 1) * b.refine_prompts * 4
    # The rounds can spend the whole budget (SOAR: 6,000 programs per task; ours: 1,500), and no more.
    assert b.max_programs == programs <= planned
    assert s.max_tokens + cfg.prompt.max_prompt_tokens <= cfg.model.max_model_len


def test_every_field_has_a_description():
    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            yield prefix + name, field
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                yield from walk(ann, prefix + name + ".")

    missing = [path for path, field in walk(RunConfig) if not field.description]
    assert missing == []


def _paths(model, prefix=""):
    out = set()
    for name, field in model.model_fields.items():
        out.add(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            out |= _paths(ann, prefix + name + ".")
    return out


def test_hash_exclusions_name_real_fields():
    assert set(HASH_EXCLUDED) <= _paths(RunConfig)


def test_hash_is_stable_for_equal_configs():
    a = parse_config({"seed": 3, "sampling": {"temperature": 0.5}})
    b = parse_config({"sampling": {"temperature": 0.5}, "seed": 3})
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 16


def test_hash_is_the_same_in_another_process():
    # str hashing is salted per process; the config hash must not depend on it.
    import os
    import subprocess
    import sys

    code = "from agent.config import *; print(config_hash(load_config(%r)))" % str(RUNS / "quickstart.toml")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == config_hash(load_config(RUNS / "quickstart.toml"))


@pytest.mark.parametrize("override", [
    "seed=1", "sampling.temperature=0.7", "sampling.samples_per_prompt=9", "sampling.min_p=0.05",
    "budget.rounds=5", "prompt.encoding=\"other\"", "data.dataset=\"arc2:eval\"", "data.limit=3",
    "model.model=\"other\"", "model.dtype=\"bfloat16\"", "search.selection_c=5.0", "search.selection_c=0",
    "search.strategy.c=5.0", "search.strategy=evolve", "search.strategy.islands=4", "search.strategy.refine_samples=4",
])
def test_hash_changes_with_result_fields(override):
    assert config_hash(parse_config({}, [override])) != config_hash(RunConfig())


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("dotted", sorted(HASH_EXCLUDED))
def test_hash_ignores_excluded_fields(dotted):
    base = parse_config({})
    old = _get(base, dotted)
    if isinstance(old, bool):
        new = "true" if not old else "false"
    elif isinstance(old, (int, float)):
        new = "1" if old != 1 else "2"
        if isinstance(old, float) and old <= 1:
            new = "0.5" if old != 0.5 else "0.6"
    elif dotted == "model.threads":
        new = "3"  # unset (None) by default
    elif dotted == "model.base_url":
        new = '"http://b:2/v1"'  # another server (a URL is checked)
    else:
        new = '"changed"'
    tree = base.model_dump(mode="json")
    if dotted == "model.base_url":
        tree["model"]["backend"] = "openai"  # base_url only counts (and is required) there
        tree["model"]["base_url"] = "http://a:1/v1"
        base = parse_config(tree)
    changed = parse_config(tree, [f"{dotted}={new}"])
    assert _get(changed, dotted) != _get(base, dotted)
    assert config_hash(changed) == config_hash(base)


def test_rex_c_comes_from_the_config_and_must_be_a_finite_non_negative_number(tmp_path):
    assert RunConfig().search.strategy.kind == "rex" and RunConfig().search.strategy.c == 20.0  # SOAR's C
    assert parse_config({"search": {"strategy": {"kind": "rex", "c": 3.5}}}).search.strategy.c == 3.5
    for bad in ("-1.0", "inf", "nan"):
        with pytest.raises(ConfigError) as err:
            parse_config({}, [f"search.strategy.c={bad}"])
        assert "search.strategy.c:" in str(err.value)


def test_configs_written_before_strategies_still_load():
    # Run directories hold configs with REX's C as search.selection_c; resume and replay must read them alike.
    old = parse_config({"search": {"selection_c": 3.5}})
    assert old.search.strategy.kind == "rex" and old.search.strategy.c == 3.5
    assert old == parse_config({"search": {"strategy": {"kind": "rex", "c": 3.5}}})
    with pytest.raises(ConfigError) as err:
        parse_config({"search": {"selection_c": 3.5, "strategy": "evolve"}})
    assert "selection_c is REX's C" in str(err.value)


def test_a_strategy_is_chosen_by_kind_and_its_knobs_are_checked_by_their_dotted_path(tmp_path):
    assert parse_config({}, ["search.strategy=evolve"]).search.strategy.kind == "evolve"
    mix = parse_config({}, ["search.strategy=mix", "search.strategy.evolve_share=0.25", "search.strategy.rex.islands=4"])
    assert mix.search.strategy.evolve_share == 0.25 and mix.search.strategy.rex.islands == 4
    with pytest.raises(ConfigError) as err:
        parse_config({}, ["search.strategy=evolve", "search.strategy.sharpnes=3", "search.strategy.crossover_rate=2"])
    text = str(err.value)
    # The tag of the union is not part of what the author wrote: paths read as in the TOML.
    assert "search.strategy.sharpnes: unknown field; allowed here:" in text and "sharpness" in text
    assert "search.strategy.crossover_rate:" in text
    with pytest.raises(ConfigError) as err:
        parse_config({}, ["search.strategy=beam"])
    assert "search.strategy:" in str(err.value) and "'rex', 'evolve', 'mix'" in str(err.value)
    # Every strategy survives the resolved-config round trip, nested tables included.
    for kind in ("rex", "evolve", "mix"):
        cfg = parse_config({}, [f"search.strategy={kind}"])
        path = tmp_path / f"{kind}.toml"
        path.write_text(config_to_toml(cfg))
        assert load_config(path) == cfg
