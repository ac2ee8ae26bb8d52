"""Run configuration: one TOML file, typed and validated, plus ``key.path=value`` overrides.

A run is fully described by its :class:`RunConfig`; the resolved config is written
into the run directory, so a run can be resumed or replayed from that file alone.
:func:`config_hash` fingerprints the fields that change results (see
:data:`HASH_EXCLUDED` for the ones that do not).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import typing
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.backends import ModelConfig
from agent.strategies import RexConfig, StrategyConfig
from sandbox import SandboxConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "HASH_EXCLUDED",
    "PromptConfig",
    "RunConfig",
    "SamplingConfig",
    "ReplConfig",
    "SearchConfig",
    "config_hash",
    "config_to_toml",
    "load_config",
    "parse_config",
    "parse_shard",
    "resolve_environment",
]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``0 <= K < N``; ValueError saying what is wrong otherwise."""
    k, sep, n = str(text).strip().partition("/")
    if not sep or not k.strip().isdigit() or not n.strip().isdigit():
        raise ValueError(f"must be K/N with whole numbers, e.g. 0/4 for the first of four shards; got {text!r}")
    ki, ni = int(k), int(n)
    if ni < 1:
        raise ValueError(f"N must be at least 1 in K/N; got {text!r}")
    if ki >= ni:
        raise ValueError(f"K must be one of 0..{ni - 1} in K/N (shards are numbered from 0); got {text!r}")
    return ki, ni


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Which tasks the run solves."""

    dataset: str = Field("arc1:eval", description="Dataset spec: 'arc1:eval', 'arc2:eval', ..., a task directory, a task file or a Kaggle *_challenges.json.")
    tasks: Optional[list[str]] = Field(None, description="Task ids to solve, in this order; all tasks of the dataset when unset.")
    tasks_file: Optional[str] = Field(None, description="A text file of task ids, one per line ('#' starts a comment); added to `tasks`.")
    limit: Optional[int] = Field(None, ge=1, description="Keep only the first `limit` selected tasks.")
    sample: Optional[int] = Field(None, ge=1, description="Seeded random sample of this many tasks (seed = run seed), kept in dataset order.")
    lenient: bool = Field(False, description="Skip malformed tasks (listed at start) instead of refusing the dataset.")
    shard: Optional[str] = Field(
        None,
        description="'K/N': solve only shard K (0 <= K < N) of the selected tasks, every N-th task starting at the K-th, "
        "for running one selection as N jobs (e.g. a Slurm array); `arcsynth merge` joins the N run directories.",
    )

    @field_validator("shard")
    @classmethod
    def _shard_is_k_of_n(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        parse_shard(value)
        return value


class SamplingConfig(_Strict):
    """How completions are sampled. Every field is sent with every request; no server defaults apply."""

    temperature: float = Field(1.0, ge=0.0, description="Softmax temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    top_k: Optional[int] = Field(None, ge=1, description="Keep only the k most likely tokens; unset = off.")
    min_p: Optional[float] = Field(None, ge=0.0, le=1.0, description="Drop tokens below min_p x the top probability (SOAR uses 0.05); unset = off.")
    max_tokens: int = Field(1024, ge=1, description="Hard cap on generated tokens per completion.")
    samples_per_prompt: int = Field(4, ge=1, description="Completions (programs) sampled from each prompt: the `n` of the request.")
    stop: list[str] = Field(default_factory=list, description="Stop strings.")


class PromptConfig(_Strict):
    """How prompts are built."""

    encoding: str = Field("spaced", description="Grid encoding in prompts, e.g. 'spaced' (digits separated by spaces).")
    templates_dir: Optional[str] = Field(None, description="A directory of Jinja2 templates replacing the built-in ones.")
    max_prompt_tokens: int = Field(6000, ge=256, description="Prompts are shrunk (fewer examples, shorter feedback) to fit this many tokens; a task whose smallest prompt does not fit is skipped.")
    show_test_inputs: bool = Field(True, description="Show the test input grids in the prompt (never their outputs).")
    parents_per_prompt: int = Field(1, ge=1, description="Earlier programs shown, with their feedback, in each refinement prompt.")
    style: Literal["explain", "code"] = Field(
        "explain",
        description="'explain': the model states the rule in a few sentences, then writes the program (for models "
        "that reason better aloud); 'code': the program only, which small models need to reach the code within "
        "their token budget.",
    )
    prefill: Optional[str] = Field(
        None,
        description="Text the assistant's reply starts with, e.g. \"```python\\ndef transform(grid):\\n\"; the "
        "model continues it (transformers and vLLM in-process, vLLM/SGLang servers; the openai chat endpoint of "
        "other servers may not support it). Extraction reads the prefill and the completion together.",
    )
    library: Optional[str] = Field(
        None,
        description="A library of solved programs (written by `arcsynth export --library`): the `library_k` most "
        "similar solved puzzles, with their programs, open every first prompt as worked examples (similarity: "
        "agent/library.py). A puzzle whose train inputs are the task's own is never shown.",
    )
    library_k: int = Field(2, ge=1, description="Library examples shown in each first prompt (fewer when the prompt must shrink).")
    observations: bool = Field(
        False,
        description="State what the shown examples change, counted from the grids (sizes; which colours become "
        "which, in how many cells), before the instruction: a small model rarely sees it for itself. Never the rule.",
    )
    offer_scipy: Optional[bool] = Field(
        None,
        description="Tell the model that scipy.ndimage may be imported. Unset = whether scipy is installed when the "
        "run is created; the run's config.toml records the value used, so resuming or replaying it after scipy "
        "was installed or removed builds the same prompts.",
    )


class BudgetConfig(_Strict):
    """How much work is spent per task, and when a task stops early."""

    rounds: int = Field(3, ge=1, description="Rounds per task: round 0 samples fresh programs, later rounds refine earlier ones.")
    first_prompts: int = Field(1, ge=1, description="Prompts in round 0, each sampled `sampling.samples_per_prompt` times.")
    refine_prompts: int = Field(2, ge=0, description="Refinement prompts per later round, each sampled `sampling.samples_per_prompt` times.")
    max_programs: Optional[int] = Field(None, ge=1, description="Stop a task after this many programs; unset = rounds x prompts x n.")
    max_completion_tokens: Optional[int] = Field(None, ge=1, description="Stop a task after generating this many tokens in total; unset = no cap.")
    max_task_wall_s: Optional[float] = Field(None, gt=0, description="Stop a task after this many seconds; unset = no cap. Makes results depend on speed.")
    stop_after_passing: Optional[int] = Field(3, ge=1, description="Stop a task once this many distinct programs pass every train pair; unset = never stop early.")
    stop_on_agreement: Optional[int] = Field(
        None, ge=1,
        description="Stop a task once at least this many distinct programs pass every train pair and all of them "
        "agree on every test output (nothing left to vote about); unset = off. Checked next to the other budgets.",
    )


class ReplConfig(_Strict):
    """Limits of one REPL attempt (search.mode 'repl'): a conversation in which the model runs code before it answers."""

    max_turns: int = Field(8, ge=1, description="Model turns (requests) per attempt, the one that submits included.")
    max_tool_calls: int = Field(12, ge=0, description="Cells run in the sandbox per attempt; past it the model is told to submit.")
    max_tokens: Optional[int] = Field(
        None, ge=1,
        description="Completion tokens per attempt over all its turns (each turn also at most sampling.max_tokens); "
        "unset = turns x sampling.max_tokens.",
    )
    max_sandbox_s: float = Field(
        30.0, gt=0,
        description="CPU seconds of sandbox time per attempt over all its cells (each cell also within "
        "sandbox.cell_timeout_s, its conversation's earlier cells re-run included).",
    )
    max_output_chars: int = Field(
        2000, ge=100, le=20000, description="Characters of one tool result shown to the model (stdout, error, grid); the rest is cut, saying how much.")
    parallel: int = Field(4, ge=1, description="Conversations of one task in flight at once (all tasks share the backend).")
    protocol: Literal["auto", "fenced", "tools"] = Field(
        "auto",
        description="How the model runs code and submits: 'fenced' (```python blocks run, SUBMIT then a block "
        "submits), 'tools' (OpenAI function calling: run_python(code) and submit(program); needs model.tool_calls), "
        "'auto': 'tools' when model.tool_calls says the server supports it, else 'fenced'.",
    )


class SearchConfig(_Strict):
    """How a task's programs are searched: the mode, and how refinement rounds choose the programs to refine."""

    mode: Literal["sample", "repl"] = Field(
        "sample",
        description="'sample': sample programs and refine them with feedback (the strategies below); 'repl': "
        "multi-turn attempts in which the model runs Python on the task's grids in the sandbox before it submits "
        "a program (search.repl), sharing the budget with the sample/refine loop as search.repl_fraction says.",
    )
    repl_fraction: float = Field(
        1.0, ge=0.0, le=1.0,
        description="mode 'repl': the share of a task's programs (budget.max_programs, or rounds x prompts x "
        "samples when unset) made by REPL attempts, one program per attempt; the sample/refine loop makes the "
        "rest, alongside, and every verified program votes. 1: REPL attempts only.",
    )
    repl: ReplConfig = Field(default_factory=ReplConfig, description="Limits of each REPL attempt (mode 'repl').")

    strategy: StrategyConfig = Field(
        default_factory=RexConfig,
        description="The search strategy, by `kind`: 'rex' (REX Thompson sampling, as SOAR), 'evolve' (Imbue-style "
        "evolution) or 'mix' (both); `search.strategy = \"evolve\"` is short for a table with only its kind. "
        "See agent/strategies for every knob.",
    )

    @model_validator(mode="after")
    def _repl_fields_need_repl_mode(self) -> "SearchConfig":
        if self.mode != "repl":
            # Compared with the defaults, not with what was written: a resolved config lists every field.
            for name in ("repl_fraction", "repl"):
                if getattr(self, name) != SearchConfig.model_fields[name].get_default(call_default_factory=True):
                    raise ValueError(f"search.{name} applies to search.mode = 'repl' only (mode is {self.mode!r})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("strategy"), str):
            data["strategy"] = {"kind": data["strategy"]}
        elif isinstance(data.get("strategy"), dict) and "kind" not in data["strategy"]:
            data["strategy"] = {"kind": "rex", **data["strategy"]}  # the default strategy's knobs alone
        if "selection_c" in data:
            # Configs written before strategies existed (run directories among them) name REX's C so.
            c = data.pop("selection_c")
            strategy = dict(data.get("strategy") or {"kind": "rex"})
            if strategy.get("kind", "rex") == "rex":
                strategy.setdefault("c", c)
            elif strategy.get("kind") == "mix":
                strategy["rex"] = {**{"c": c}, **dict(strategy.get("rex") or {})}
            else:
                raise ValueError("selection_c is REX's C; set it as strategy.c of a 'rex' or 'mix' strategy")
            data["strategy"] = strategy
        return data


class RunConfig(_Strict):
    """Everything that defines a solve run."""

    name: str = Field("run", min_length=1, description="Run name; the default run directory is <out_root>/<name>-<YYYYmmdd-HHMMSS>.")
    seed: int = Field(0, description="Run seed; every request seed is derived from it, the task id, the round and the request index.")
    concurrency: int = Field(4, ge=1, description="Tasks in flight at once.")
    data: DataConfig = Field(default_factory=DataConfig, description="Which tasks to solve.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model backend.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="Sampling settings of every request.")
    prompt: PromptConfig = Field(default_factory=PromptConfig, description="Prompt construction.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig, description="Work per task and early stopping.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Parent selection in refinement rounds.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description="The program sandbox.")
    out_root: str = Field("runs", description="Directory under which a new run directory is created when --out is not given.")

    @model_validator(mode="after")
    def _tools_need_a_server_that_calls_them(self) -> "RunConfig":
        if self.search.repl.protocol == "tools" and not self.model.tool_calls:
            raise ValueError("search.repl.protocol = 'tools' needs model.tool_calls = true (a server with function calling)")
        return self

    def repl_protocol(self) -> Literal["fenced", "tools"]:
        """The REPL protocol this run uses ('auto' resolved)."""
        p = self.search.repl.protocol
        return p if p != "auto" else ("tools" if self.model.tool_calls else "fenced")

    @field_validator("name")
    @classmethod
    def _name_is_a_path_component(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError("must not contain '/' or '\\' (it becomes a directory name)")
        return value


def resolve_environment(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the settings that default to what this machine has made explicit.

    Called when a run is created: the written config then says what the prompts
    were built with, and a resume or replay elsewhere builds the same ones.
    """
    if cfg.prompt.offer_scipy is None:
        import importlib.util

        cfg = cfg.model_copy(deep=True)
        cfg.prompt.offer_scipy = importlib.util.find_spec("scipy") is not None
    return cfg


# ---------------------------------------------------------------------------------------
# Hashing

HASH_EXCLUDED: dict[str, str] = {
    "name": "a label",
    "concurrency": "tasks in flight change speed, not any task's result",
    "out_root": "where outputs go",
    "model.concurrency": "requests in flight",
    "model.request_timeout_s": "how long to wait for a server",
    "model.max_retries": "retries of failed requests",
    "model.retry_window_s": "how long failed requests are retried",
    "model.startup_timeout_s": "how long to wait for a server loading its model",
    "model.api_key_env": "credentials",
    "model.base_url": "where the server listens, not what it serves",
    "model.replay_dir": "a path; the replayed run is recorded in provenance",
    "model.gpu_memory_utilization": "KV-cache size: speed only",
    "model.enable_prefix_caching": "reuse of prompt computation: speed only",
    "model.threads": "CPU threads: speed (and float rounding, which depends on the machine anyway)",
    "sandbox.workers": "worker processes: throughput only",
}
"""Dotted config fields left out of :func:`config_hash`, with the reason.

Like vLLM's ``compute_hash``: everything not listed here is assumed to change results,
so a new field is hashed unless someone decides otherwise and says why here. Entries
that name a field the config does not have are ignored (and flagged by a test).
"""


def _drop(tree: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = tree
    for p in parents:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def hashed_fields(cfg: RunConfig) -> dict[str, Any]:
    """The JSON form of ``cfg`` that :func:`config_hash` digests."""
    tree = cfg.model_dump(mode="json")
    for dotted in HASH_EXCLUDED:
        _drop(tree, dotted)
    return tree


def config_hash(cfg: RunConfig) -> str:
    """A 16-hex-digit fingerprint of the result-relevant fields of ``cfg``."""
    blob = json.dumps(hashed_fields(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------
# Loading and errors


class ConfigError(ValueError):
    """A config cannot be used. ``problems`` lists every bad field, one line each."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems))


def _union_member(annotation: Any, tag: Any) -> type[BaseModel] | None:
    """The member of a tagged union (``kind`` literal) that ``tag`` names, if ``annotation`` is one."""
    for arg in typing.get_args(annotation):
        for member in typing.get_args(arg) or (arg,):
            if isinstance(member, type) and issubclass(member, BaseModel):
                kind = member.model_fields.get("kind")
                if kind is not None and kind.default == tag:
                    return member
    return None


def _walk(loc: tuple[Any, ...]) -> tuple[type[BaseModel] | None, tuple[Any, ...]]:
    """The model owning the last part of ``loc``, and ``loc`` without tagged-union tags.

    Pydantic puts the tag of a tagged union into error locations
    ('search', 'strategy', 'evolve', 'sharpness'); a config author never wrote it.
    """
    model: Any = RunConfig
    clean: list[Any] = []
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        clean.append(part)
        last = i == len(parts) - 1
        if not last and model is not None and not isinstance(part, int):
            field = getattr(model, "model_fields", {}).get(part)
            ann = field.annotation if field is not None else None
            member = _union_member(ann, parts[i + 1]) if ann is not None else None
            if member is not None:
                model, i = member, i + 2
                continue
            model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        i += 1
    return model, tuple(clean)


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in _walk(loc)[1]:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (its parent), if any."""
    model, clean = _walk(loc)
    if not clean:
        return None
    # _walk stops on the last part: the model reached is the owner of that part.
    return model


def _describe_field(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc)
    if model is None or not loc or isinstance(loc[-1], int):
        return ""
    field = model.model_fields.get(_walk(loc)[1][-1])
    return f" ({field.description})" if field is not None and field.description else ""


def _format_error(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    path = _dotted(loc)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        model = _model_at(loc)
        allowed = ", ".join(model.model_fields) if model is not None else "?"
        return f"{path}: unknown field; allowed here: {allowed}"
    if kind == "missing":
        return f"{path}: required{_describe_field(loc)}"
    given = err.get("input")
    shown = json.dumps(given, default=str) if not isinstance(given, dict) else "a table"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{path}: {msg}, got {shown}"


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (['a','b','c'], value). The value is read as a TOML literal when it
    is one (``3``, ``true``, ``0.5``, ``["a","b"]``, ``"x"``), else taken as a plain string."""
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key.path=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not key or any(not p.strip() for p in parts):
        raise ValueError(f"override {item!r} has an empty key part")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return [p.strip() for p in parts], value


_SHORTHAND_TABLES = {("search", "strategy"): "kind"}
"""Tables that may be written as a bare string, naming the value of this key."""


def _apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for depth, p in enumerate(parts[:-1], start=1):
        nxt = node.get(p)
        shorthand = _SHORTHAND_TABLES.get(tuple(parts[:depth]))
        if isinstance(nxt, str) and shorthand:
            nxt = node[p] = {shorthand: nxt}  # `search.strategy = "evolve"` then `search.strategy.sharpness = 5`
        if nxt is None:
            nxt = node[p] = {}
        elif not isinstance(nxt, dict):
            raise ValueError(f"{'.'.join(parts)}: '{p}' is a value, not a table")
        node = nxt
    node[parts[-1]] = value


def parse_config(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), *, source: str = "config") -> RunConfig:
    """Validate a config tree (e.g. parsed TOML) after applying ``overrides``.

    Raises one :class:`ConfigError` listing every problem found.
    """
    problems: list[str] = []
    tree = json.loads(json.dumps(data, default=str)) if data else {}
    for item in overrides:
        try:
            parts, value = parse_override(item)
            _apply_override(tree, parts, value)
        except ValueError as e:
            problems.append(str(e))
    try:
        cfg = RunConfig.model_validate(tree)
    except ValidationError as e:
        problems += [_format_error(err) for err in e.errors()]
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read a TOML config, apply ``key.path=value`` overrides and validate.

    Every problem (TOML syntax, unknown keys, bad values, bad overrides) ends in a
    :class:`ConfigError` naming the file and each dotted field.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(p), ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [f"cannot read: {getattr(e, 'strerror', None) or e}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [f"not valid TOML: {e}"]) from None
    return parse_config(data, overrides, source=str(p))


# ---------------------------------------------------------------------------------------
# Writing


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "_-" for c in key):
        return key
    return json.dumps(key)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are a subset of TOML basic-string escapes.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def config_to_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML that :func:`load_config` reads back to an equal config.

    TOML has no null: a field set to None is written as a comment, which reads back as
    its default; that round trip is checked here, so a field whose default is not None
    but whose value is None cannot silently change meaning.
    """
    tree = cfg.model_dump(mode="json")
    lines = [f"# arcsynth run config (config hash {config_hash(cfg)})"]

    def table(path: list[str], node: dict[str, Any]) -> None:
        if path and not all(isinstance(v, dict) for v in node.values()):
            lines.extend(["", "[" + ".".join(_toml_key(p) for p in path) + "]"])
        subtables = []
        for key, value in node.items():
            if isinstance(value, dict):
                subtables.append((key, value))  # after the scalars: TOML puts a table's keys under its header
            elif value is None:
                lines.append(f"# {_toml_key(key)} unset")
            else:
                lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in subtables:
            table([*path, key], value)

    table([], tree)
    text = "\n".join(lines) + "\n"
    back = parse_config(tomllib.loads(text), source="resolved config")
    if back != cfg:
        raise ValueError("resolved config does not survive a TOML round trip (a None over a non-None default?)")
    return text
