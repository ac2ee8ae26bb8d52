"""Prompts: grid encodings, Jinja2 templates, refinement feedback and budget fitting."""

from prompts.builder import (
    CountTokens,
    LibraryExample,
    Parent,
    Prompt,
    PromptTooLong,
    build_first_prompt,
    build_refine_prompt,
    build_repl_prompt,
    rank_parents,
    render_repl_nudge,
    render_repl_results,
)
from prompts.encodings import COLOUR_NAMES, COMPACT_ENCODING, ENCODINGS, Encoding, UnknownEncoding, get_encoding
from prompts.feedback import FEEDBACK_DETAILS, FeedbackDetail, cell_diff, pair_feedback, parent_feedback, score_line
from prompts.templating import PromptTemplateError

__all__ = [
    "COLOUR_NAMES",
    "COMPACT_ENCODING",
    "ENCODINGS",
    "FEEDBACK_DETAILS",
    "CountTokens",
    "Encoding",
    "FeedbackDetail",
    "Parent",
    "Prompt",
    "PromptTemplateError",
    "PromptTooLong",
    "UnknownEncoding",
    "build_first_prompt",
    "build_refine_prompt",
    "build_repl_prompt",
    "render_repl_nudge",
    "render_repl_results",
    "cell_diff",
    "get_encoding",
    "pair_feedback",
    "parent_feedback",
    "rank_parents",
    "score_line",
]
