"""Sovereign incident summaries: a local GGUF model run by llama.cpp (llama-cpp-python), grounded
on masked incident facts only, so that drafting a breach narrative never sends the breach's data
to a third-party AI service.

- :mod:`leakwatch.llm.models` finds, installs, verifies and describes model files.
- :mod:`leakwatch.llm.summarize` builds the prompt from :class:`~leakwatch.incidents.facts.IncidentFacts`,
  streams the answer, checks every number, date, vendor and region against the facts, and always
  has the deterministic template summary ready beside it.

Everything here works without llama-cpp-python or without a model: the template is used and the
result says so. Nothing in this package imports Textual; the console drives it from a worker thread
(:func:`~leakwatch.llm.summarize.stream_summary` with a ``threading.Event`` to cancel).
"""
from __future__ import annotations

from leakwatch.llm.models import (
    ModelError,
    ModelInfo,
    install_default,
    model_info,
    resolve_model_path,
)
from leakwatch.llm.summarize import Summary, stream_summary, template_summary

__all__ = [
    "ModelError",
    "ModelInfo",
    "Summary",
    "install_default",
    "model_info",
    "resolve_model_path",
    "stream_summary",
    "template_summary",
]
