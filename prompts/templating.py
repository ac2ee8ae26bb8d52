"""Loading the Jinja2 prompt templates.

The templates ship inside the package (read through ``importlib.resources`` so
an installed wheel works) and a user directory may override any of them by
file name: a file there wins, every other name falls back to the packaged one.

Templates: ``system.j2`` (includes ``contract.j2``, the program contract, stated
once), ``first.j2`` and ``refine.j2`` (both include ``examples.j2``). Variables:

- ``encoding``: ``.name`` and ``.description`` (how to read the grids)
- ``examples``: shown train pairs, each ``number``, ``index`` (train index),
  ``input``, ``input_shape``, ``output``, ``output_shape`` (grids already encoded)
- ``hidden_examples``: train pairs left out to fit the budget
- ``tests``: shown test inputs, each ``number``, ``input``, ``input_shape``
- ``scipy_available``, ``code_only`` (answer with the program only), ``task_id``
- ``repl_system.j2`` / ``repl_first.j2`` (REPL mode, include ``contract.j2`` and
  ``examples.j2``): also ``limits`` (``max_turns``, ``max_tool_calls``,
  ``max_output_chars``); ``repl_result.j2``: ``results`` (per code block ``number``,
  ``status``, ``output``, ``grid``, ``grid_shape``, ``error_type``, ``error``),
  ``calls_left``, ``turns_left``, ``note``; ``repl_nudge.j2``: ``reason``,
  ``must_submit``, ``detail``, ``tools``; ``tools`` also in the system and first
  REPL templates (function calling rather than fenced blocks)
- refine only, ``parents`` (best first): ``number``, ``source``, ``fence``,
  ``score`` (one line), ``feedback`` (per-pair text from :mod:`prompts.feedback`)

Undefined variables are errors, so a typo in a user template fails loudly.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

import jinja2

TEMPLATE_NAMES = ("system.j2", "contract.j2", "examples.j2", "first.j2", "refine.j2",
                  "repl_system.j2", "repl_first.j2", "repl_result.j2", "repl_nudge.j2")


class PromptTemplateError(ValueError):
    """A prompt template is missing or broken; the message names the file and line."""


def _packaged_source(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    ref = resources.files("prompts").joinpath("templates", name)
    if not ref.is_file():
        return None
    text = ref.read_text(encoding="utf-8")
    # Packaged templates never change while the process runs.
    return text, f"prompts/templates/{name}", lambda: True


@lru_cache(maxsize=16)
def environment(templates_dir: str | None = None) -> jinja2.Environment:
    """A Jinja environment reading ``templates_dir`` first, then the packaged templates."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        path = Path(templates_dir)
        if not path.is_dir():
            raise PromptTemplateError(f"prompt templates directory {templates_dir} does not exist or is not a directory")
        loaders.append(jinja2.FileSystemLoader(str(path)))
    loaders.append(jinja2.FunctionLoader(_packaged_source))
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,  # a misspelt variable in a user template is an error, not blank text
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, templates_dir: str | Path | None = None, **context) -> str:
    """Render template ``name``; errors come back as :class:`PromptTemplateError`."""
    env = environment(str(templates_dir) if templates_dir is not None else None)
    try:
        return env.get_template(name).render(**context).strip()
    except jinja2.TemplateSyntaxError as e:
        raise PromptTemplateError(f"prompt template {e.filename or e.name}, line {e.lineno}: {e.message}") from None
    except jinja2.TemplateNotFound as e:
        raise PromptTemplateError(f"prompt template {e.name} not found (looked in {templates_dir or 'the packaged templates'})") from None
    except jinja2.UndefinedError as e:
        raise PromptTemplateError(f"prompt template {name} (or a template it includes): {e.message}") from None
