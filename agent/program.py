"""Programs: getting a runnable ``transform`` out of a model's reply, and a
normal form of program source for deduplication.

Extraction rules (in order):

1. Reasoning is ignored: ``<think>...</think>`` sections (also ``<thinking>``,
   ``<reasoning>``), everything before a lone closing tag (the chat template
   opened the section in the prompt), and everything after an opening tag that
   is never closed. Code drafted while reasoning is not the answer.
2. Fenced blocks labelled python/py (or unlabelled) are code; other labels
   (```text, ```json) are not. An unclosed fence runs to the end of the reply
   (a completion cut off at the token limit).
3. The chosen block is the **last** block that parses and defines a top-level
   ``transform``: models revise as they write, and the last version is the one
   they mean. Helper blocks are **merged**: other parseable blocks that do not
   define ``transform`` but define names the chosen block uses are prepended, in
   reply order (repeated until nothing new is needed). Blocks that define a
   different ``transform`` are never merged.
4. No ``transform`` but one top-level function taking one argument (``solve(grid)``,
   ``transform_grid(g)``): accepted by appending ``transform = <name>``, noted in
   ``detail`` and ``renamed_from``. With several such functions, a single one
   whose name says transform/solve/solution/main is taken; otherwise
   ``no_transform``.
5. No fences at all: the reply itself, or the code starting at its first
   ``def``/``import``/``from``/``class`` line with trailing prose cut off, is used
   when it parses.
6. A ``transform`` block that does not parse gives ``syntax_error`` with the line
   and message (and says so when the completion hit the token limit), unless what
   does not parse is whole top-level statements after ``transform`` (example calls cut
   off by the token limit): those are dropped, noted in ``detail``.
7. A program that uses ``np`` without importing it gets ``import numpy as np``
   prepended: the prompt contract promises numpy as ``np``.

:func:`extract_program` never raises.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import keyword
import re
import textwrap
from dataclasses import dataclass
from typing import Literal, Optional

from pydantic import BaseModel, Field, PrivateAttr

from arcsynth.memo import RecentMemo

ExtractionStatus = Literal["ok", "no_code", "no_transform", "syntax_error"]

ENTRY_NAME = "transform"
_CODE_LANGS = {"", "python", "py", "python3", "py3", "ipython", "ipython3"}
_REASONING_TAGS = "think|thinking|reasoning"
_OPEN_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_CODE_START = re.compile(r"^(import\s|from\s+\S+\s+import\s|def\s|class\s|@)")
# Top-level lines that define a function _CODE_START does not see: ``async def``, or the
# entry point bound by assignment (``transform = ...``).
_MARGIN_DEFINITION = re.compile(rf"^(async\s+def\s|{ENTRY_NAME}\s*[:=])", re.M)
_PREFERRED_ENTRY = re.compile(r"transform|solve|solution|^main$|^run$|^apply", re.I)
_BUILTINS = frozenset(dir(builtins))


# Program hashes by source, and extractions by code blocks (with notes and finish reason).
_RECENT_HASHES = RecentMemo(max_chars=8_000_000)
_RECENT_EXTRACTIONS = RecentMemo(max_chars=16_000_000)


class Extraction(BaseModel):
    """The program found in a reply, or why none was."""

    status: ExtractionStatus = Field(description="ok | no_code | no_transform | syntax_error")
    source: Optional[str] = Field(
        None, description="The program to run (ok), or the code that failed to parse (syntax_error); None otherwise."
    )
    detail: str = Field("", description="What was found or wrong, readable by a person and by the model in a retry.")
    renamed_from: Optional[str] = Field(None, description="The function used as transform when the model named it otherwise.")
    # The parse of ``source`` (status ok) that extraction made anyway: hashing reuses it.
    _tree: Optional[ast.Module] = PrivateAttr(None)

    def source_hash(self) -> str:
        """:func:`program_hash` of ``source``, without parsing it again where extraction already did."""
        if self.source is None:
            raise ValueError("no source to hash")
        return program_hash(self.source, tree=self._tree)


@dataclass
class _Block:
    lang: str
    code: str
    closed: bool
    tree: Optional[ast.Module] = None
    error: Optional[BaseException] = None
    _free: Optional[set[str]] = None

    @property
    def free_names(self) -> set[str]:
        """:func:`_free_names` of the tree, computed once (a walk over every node)."""
        if self._free is None:
            assert self.tree is not None
            self._free = _free_names(self.tree)
        return self._free


def _parse(code: str) -> tuple[Optional[ast.Module], Optional[BaseException]]:
    try:
        return ast.parse(code), None
    # ValueError: null bytes (3.11); RecursionError/MemoryError: absurd nesting.
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return None, e


def _strip_reasoning(text: str) -> tuple[str, list[str]]:
    notes: list[str] = []
    stripped = re.sub(rf"<({_REASONING_TAGS})>.*?</\1\s*>", "", text, flags=re.S | re.I)
    if stripped != text:
        notes.append("ignored the reasoning section(s)")
    text = stripped
    closes = list(re.finditer(rf"</(?:{_REASONING_TAGS})\s*>", text, flags=re.I))
    if closes:
        text = text[closes[-1].end() :]
        notes.append("ignored the reasoning before </think>")
    opening = re.search(rf"<(?:{_REASONING_TAGS})>", text, flags=re.I)
    if opening:
        text = text[: opening.start()]
        notes.append("ignored an unterminated <think> section")
    return text, notes


def _fenced_blocks(text: str) -> list[_Block]:
    lines = text.split("\n")
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        # Most lines are prose or code: no fence character, no regex.
        m = _OPEN_FENCE.match(line) if ("`" in line or "~" in line) else None
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        mark = fence[0]
        body: list[str] = []
        j = i + 1
        closed = False
        while j < len(lines):
            if mark not in lines[j]:  # cannot close the block
                body.append(lines[j])
                j += 1
                continue
            s = lines[j].strip()
            if s and set(s) == {mark} and len(s) >= len(fence):
                closed = True
                break
            if s.endswith(fence) and not s.endswith(mark * (len(fence) + 1)):
                # "    return out```": the model closed the fence on the last code line.
                body.append(lines[j].rstrip()[: -len(fence)])
                closed = True
                break
            body.append(lines[j])
            j += 1
        # Dedent: a block inside a markdown list item is indented as a whole.
        blocks.append(_Block(lang=lang, code=textwrap.dedent("\n".join(body)).strip("\n"), closed=closed))
        i = j + 1
    return blocks


def _defines(tree: ast.Module, name: str) -> bool:
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _free_names(tree: ast.Module) -> set[str]:
    """Names used but bound nowhere in the code (an over-approximation of locals is fine here)."""
    loaded, bound = set(), set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (loaded if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
    return loaded - bound - _top_level_names(tree) - _BUILTINS


def _one_arg_functions(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            positional = len(a.posonlyargs) + len(a.args)
            if positional - len(a.defaults) == 1 and not any(d is None for d in a.kw_defaults):
                names.append(node.name)
    return names


def _entry_alias(tree: ast.Module) -> tuple[Optional[str], list[str]]:
    """The function to use as transform, and all one-argument functions seen."""
    candidates = _one_arg_functions(tree)
    if len(candidates) == 1:
        return candidates[0], candidates
    preferred = [c for c in candidates if _PREFERRED_ENTRY.search(c)]
    if len(preferred) == 1:
        return preferred[0], candidates
    return None, candidates


def _syntax_detail(error: BaseException, code: str) -> str:
    if isinstance(error, SyntaxError):
        line = error.lineno or 0
        lines = code.split("\n")
        text = lines[line - 1].rstrip() if 0 < line <= len(lines) else (error.text or "").rstrip()
        out = f"SyntaxError at line {line}: {error.msg}" if line else f"SyntaxError: {error.msg}"
        return out + (f"\n    {text.strip()}" if text.strip() else "")
    return f"{type(error).__name__}: {error}"


def _merge_helpers(blocks: list[_Block], chosen: int) -> list[int]:
    """The blocks of the program, in reply order: the helper blocks the chosen one needs, then it."""
    assert blocks[chosen].tree is not None
    helpers = [k for k, b in enumerate(blocks) if k != chosen and b.tree is not None and not _defines(b.tree, ENTRY_NAME)]
    if not helpers:  # the common case, one block: no walk over the tree for free names
        return [chosen]
    needed = set(blocks[chosen].free_names)
    provided: set[str] = set()
    merged: set[int] = set()
    changed = True
    while changed:
        changed = False
        for k in helpers:
            if k in merged:
                continue
            b = blocks[k]
            assert b.tree is not None
            names = _top_level_names(b.tree)
            if names & (needed - provided):
                merged.add(k)
                provided |= names
                needed |= b.free_names
                changed = True
    return sorted(merged) + [chosen]


def _cut_notes(finish_reason: Optional[str], closed: bool = True) -> str:
    notes = []
    if not closed:
        notes.append("the code block is not closed")
    if finish_reason == "length":
        notes.append("the completion hit the token limit (finish_reason=length), so the code is cut off")
    return ("; ".join(notes).capitalize() + ".") if notes else ""


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


_NP_WORD = re.compile(r"\bnp\b")


def _uses_np_unbound(tree: ast.Module, source: str, free: Optional[set[str]]) -> bool:
    """Whether the program uses ``np`` without binding it (then it gets the import)."""
    if not _NP_WORD.search(source):
        return False  # no `np` anywhere: no walk over the tree needed
    if "np" in _top_level_names(tree):
        return False  # imported or assigned at top level
    return "np" in (free if free is not None else _free_names(tree))


def _ok(blocks: list[_Block], order: list[int], msgs: list[str], renamed_from: Optional[str] = None) -> Extraction:
    """The program made of ``blocks[k] for k in order`` (plus the alias of a renamed entry point)."""
    source = "\n\n".join(blocks[k].code for k in order)
    tree: Optional[ast.Module]
    free: Optional[set[str]] = None
    if len(order) == 1:
        # One block: its parse is the program's; nothing is parsed twice.
        block = blocks[order[0]]
        tree = block.tree
        free = block._free
    else:
        tree, _ = _parse(source)
    if renamed_from is not None:
        source = f"{source}\n\n\n{ENTRY_NAME} = {renamed_from}\n"
        if tree is not None:
            alias = ast.parse(f"{ENTRY_NAME} = {renamed_from}")
            tree = ast.Module(body=[*tree.body, *alias.body], type_ignores=[])
    # The prompt contract promises numpy as `np`; the sandbox runs the source as
    # written, so a program that relies on the promise gets the import here.
    if tree is not None and _uses_np_unbound(tree, source, free):
        source = "import numpy as np\n\n" + source
        msgs = msgs + ["Added `import numpy as np`."]
        tree = ast.Module(body=[*ast.parse("import numpy as np").body, *tree.body], type_ignores=[])
    ext = Extraction(status="ok", source=source, detail=_join(*msgs), renamed_from=renamed_from)
    if tree is not None and len(order) == 1 and not _has_future_import(tree):
        # The tree is exactly what parsing ``source`` gives (a __future__ import after
        # the added numpy import would not parse: that case is left to program_hash).
        ext._tree = tree
    return ext


def _has_future_import(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.ImportFrom) and node.module == "__future__" for node in tree.body)


def _cut_unfinished_tail(code: str) -> Optional[tuple[str, int]]:
    """``code`` without the top-level code after ``transform`` that does not parse, and the line cut at.

    Small models often follow the function with example calls that the token limit cuts
    mid-line (``print(transform(np.array([[1, 2``). Only whole top-level statements after
    the ``def transform`` line are dropped, the longest prefix that parses is kept, and
    it must still define ``transform``: an error inside the function is never trimmed.
    """
    lines = code.split("\n")
    start = next((i for i, ln in enumerate(lines) if re.match(rf"def\s+{ENTRY_NAME}\s*\(", ln)), None)
    if start is None:
        return None
    cuts = [i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][:1].isspace()]
    for i in reversed(cuts):
        tree, _ = _parse("\n".join(lines[:i]).rstrip())
        if tree is not None and _defines(tree, ENTRY_NAME):
            while i > start + 1 and (not lines[i - 1].strip() or lines[i - 1].startswith("#")):
                i -= 1  # the comment that introduced the dropped code goes with it
            first = next(k for k in range(i, len(lines)) if lines[k].strip())
            return "\n".join(lines[:i]).rstrip(), first + 1
    return None


def _from_blocks(blocks: list[_Block], notes: list[str], finish_reason: Optional[str]) -> Extraction:
    notes = list(notes)
    for b in blocks:
        b.tree, b.error = _parse(b.code)
        if b.tree is None:
            cut = _cut_unfinished_tail(b.code)
            if cut is not None:
                b.code, line = cut
                b.tree, b.error = _parse(b.code)
                why = " (the completion hit the token limit)" if finish_reason == "length" else ""
                notes.append(f"dropped the unfinished code after transform from line {line} of its block{why}")
    prefix = "; ".join(notes)
    prefix = (prefix[0].upper() + prefix[1:] + ".") if prefix else ""

    defining = [k for k, b in enumerate(blocks) if b.tree is not None and _defines(b.tree, ENTRY_NAME)]
    broken_transform = [
        k for k, b in enumerate(blocks) if b.tree is None and re.search(rf"^\s*def\s+{ENTRY_NAME}\s*\(", b.code, re.M)
    ]
    if defining:
        chosen = defining[-1]
        order = _merge_helpers(blocks, chosen)
        n_merged = len(order) - 1
        msgs = [prefix]
        if len(blocks) > 1:
            msgs.append(f"Used code block {chosen + 1} of {len(blocks)}.")
        if n_merged:
            msgs.append(f"Merged {n_merged} helper block(s) it uses.")
        later_broken = [k for k in broken_transform if k > chosen]
        if later_broken:
            k = later_broken[-1]
            msgs.append(f"A later block ({k + 1}) defining transform did not parse ({_syntax_detail(blocks[k].error, blocks[k].code)}).")
        return _ok(blocks, order, msgs)

    if broken_transform:
        b = blocks[broken_transform[-1]]
        return Extraction(
            status="syntax_error", source=b.code, detail=_lines(prefix, _syntax_detail(b.error, b.code), _cut_notes(finish_reason, b.closed))
        )

    seen_functions: list[str] = []
    for k in range(len(blocks) - 1, -1, -1):
        b = blocks[k]
        if b.tree is None:
            continue
        name, candidates = _entry_alias(b.tree)
        seen_functions = candidates + seen_functions
        if name is not None:
            order = _merge_helpers(blocks, k)
            msgs = [prefix, f"No function named transform; used `{name}` as transform."]
            if len(order) > 1:
                msgs.append(f"Merged {len(order) - 1} helper block(s) it uses.")
            return _ok(blocks, order, msgs, renamed_from=name)

    broken = [b for b in blocks if b.tree is None]
    if broken:
        b = broken[-1]
        return Extraction(
            status="syntax_error", source=b.code, detail=_lines(prefix, _syntax_detail(b.error, b.code), _cut_notes(finish_reason, b.closed))
        )
    if seen_functions:
        why = f"the code defines no function `transform(grid)`; one-argument functions found: {', '.join(sorted(set(seen_functions)))}"
    else:
        why = "the code defines no top-level function `transform(grid)`"
    return Extraction(status="no_transform", detail=_join(prefix, why[0].upper() + why[1:] + "."))


def _looks_like_prose(line: str) -> bool:
    """An unindented line that is not code (prose after the program)."""
    s = line.strip()
    if not s or line[:1].isspace() or "=" in s:
        return False
    if s.split()[0].rstrip(":") in keyword.kwlist:
        return False
    return _parse(s)[0] is None


def _bare_code(text: str) -> Optional[tuple[str, int]]:
    """Code written without fences: the whole text, or from the first code line with trailing prose cut."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None and not _MARGIN_DEFINITION.search(text):
        # Nothing at the left margin can define a function: prose, which need not be parsed.
        return None
    tree, _ = _parse(text)
    if tree is not None and (_defines(tree, ENTRY_NAME) or _one_arg_functions(tree)):
        return text, 1
    if start is None:
        return None
    code_lines = lines[start:]
    for _ in range(200):
        code = "\n".join(code_lines).rstrip()
        tree, err = _parse(code)
        if tree is not None:
            return code, start + 1
        # Cut only at an unindented prose line: a syntax error inside a function
        # body must be reported, not silently trimmed away.
        line = getattr(err, "lineno", None)
        if not isinstance(err, SyntaxError) or not line or line <= 1 or line > len(code_lines):
            return None
        if not _looks_like_prose(code_lines[line - 1]):
            return None
        code_lines = code_lines[: line - 1]
    return None


def _extract(text: str, finish_reason: Optional[str]) -> Extraction:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Extraction(status="no_code", detail=_join("The reply is empty.", _cut_notes(finish_reason)))
    answer, notes = _strip_reasoning(text)
    if not answer.strip():
        return Extraction(
            status="no_code",
            detail=_join("The reply has no answer outside its reasoning (<think>) section.", _cut_notes(finish_reason)),
        )
    blocks = _fenced_blocks(answer)
    code_blocks = [b for b in blocks if b.lang in _CODE_LANGS and b.code.strip()]
    # Replies differ in their prose far more often than in their code: the same code
    # blocks (or, without fences, the same answer) with the same notes and finish reason
    # give the same extraction.
    if code_blocks:
        key: tuple = (tuple((b.lang, b.code, b.closed) for b in code_blocks), tuple(notes), finish_reason)
        chars = sum(len(b.code) for b in code_blocks)
    else:
        key, chars = (answer, tuple(notes), finish_reason), len(answer)
    seen = _RECENT_EXTRACTIONS.get(key)
    if seen is not None:
        return seen.model_copy()  # the caller may change its copy (detail); the memo keeps its own
    ext = _from_blocks(code_blocks, notes, finish_reason) if code_blocks else _unfenced(answer, blocks, notes, finish_reason)
    # Kept without its parse: trees are large, and hashing modifies the tree it is given
    # (a repeat is hashed from the hash memo instead).
    kept = ext.model_copy()
    kept._tree = None
    _RECENT_EXTRACTIONS.put(key, kept, 2 * chars + sum(map(len, notes)))
    return ext


def _unfenced(answer: str, blocks: list[_Block], notes: list[str], finish_reason: Optional[str]) -> Extraction:
    """The program of an answer with no fenced Python code: bare code, or why there is none."""
    bare = _bare_code(answer.strip())
    if bare is not None:
        code, line = bare
        result = _from_blocks([_Block(lang="", code=code, closed=True)], notes, finish_reason)
        if result.status == "ok":
            result.detail = _join(f"No fenced code block; used the bare code from line {line} of the reply.", result.detail)
        return result
    if re.search(rf"^\s*def\s+{ENTRY_NAME}\s*\(", answer, re.M):
        # Bare code that defines transform but does not parse: report where.
        lines = answer.strip().split("\n")
        start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), 0)
        code = "\n".join(lines[start:])
        _, err = _parse(code)
        if err is not None:
            return Extraction(status="syntax_error", source=code, detail=_lines(_syntax_detail(err, code), _cut_notes(finish_reason)))
    what = "no ```python code block"
    if blocks:
        what += " (only empty or non-Python blocks: " + ", ".join(sorted({b.lang or "unlabelled" for b in blocks})) + ")"
    return Extraction(status="no_code", detail=_join(f"The reply has {what} and no Python code.", _cut_notes(finish_reason)))


def extract_program(text: str, *, finish_reason: Optional[str] = None) -> Extraction:
    """The ``transform`` program in a model reply; see the module docstring for the rules.

    ``finish_reason`` ('length' when the completion hit the token limit) only
    makes the detail of a failure say the code was cut off. Never raises.
    """
    if not isinstance(text, str):
        return Extraction(status="no_code", detail=f"The reply is {type(text).__name__}, not text.")
    try:
        return _extract(text, finish_reason)
    except Exception as e:  # never raise: one odd completion must not stop a solve
        return Extraction(status="no_code", detail=f"Could not extract a program ({type(e).__name__}: {e}).")


_WITH_DOCSTRING = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Statement fields that hold statements: where a def or class can be nested.
_BODY_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def _docstringless(body: list[ast.stmt], owner: ast.AST) -> list[ast.stmt]:
    """``body`` with the docstrings of ``owner`` and of every def and class in it removed (a copy where changed)."""
    out = body
    if isinstance(owner, _WITH_DOCSTRING) and body and isinstance(body[0], ast.Expr) \
            and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        out = body[1:] or [ast.Pass()]
    for node in out:
        for name in _BODY_FIELDS:
            inner = getattr(node, name, None)
            if inner:  # statements only: expressions hold no docstrings, so they are not visited
                if name in ("handlers", "cases"):
                    for clause in inner:
                        clause.body = _docstringless(clause.body, clause)
                else:
                    setattr(node, name, _docstringless(inner, node))
    return out


def _normal_form(tree: ast.Module) -> str:
    """``ast.unparse`` of ``tree`` without docstrings; modifies ``tree``."""
    tree.body = _docstringless(tree.body, tree)
    return ast.unparse(tree)


def normalise_source(source: str, *, tree: Optional[ast.Module] = None) -> str:
    """A normal form of a program: docstrings and comments gone, formatting canonical.

    Programs that differ only in formatting, comments or docstrings map to the
    same string. Code that does not parse falls back to its non-blank lines
    with trailing whitespace removed. ``tree``, when given, must be the parse of
    ``source`` (it saves parsing again) and is modified.
    """
    if tree is None:
        tree, _ = _parse(source)
    if tree is not None:
        try:
            return _normal_form(tree)
        except (RecursionError, ValueError, MemoryError):
            pass
    return "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").split("\n") if line.strip())


def program_hash(source: str, *, tree: Optional[ast.Module] = None) -> str:
    """Identity of a program for deduplication: sha256 of its normal form, 16 hex characters.

    ``tree``: the parse of ``source`` where the caller has it (it is modified).
    """
    h = _RECENT_HASHES.get(source)
    if h is None:
        h = hashlib.sha256(normalise_source(source, tree=tree).encode("utf-8")).hexdigest()[:16]
        _RECENT_HASHES.put(source, h, len(source))
    return h


def code_blocks(text: str) -> list[tuple[str, bool]]:
    """The Python code blocks of a reply, outside its reasoning, as (code, closed) in order.

    Blocks labelled ``python``/``py`` or not labelled at all count; other languages
    (output the model quotes, say) do not.
    """
    answer, _notes = _strip_reasoning(text)
    return [(b.code, b.closed) for b in _fenced_blocks(answer) if b.lang in ("", "python", "py", "python3")]
