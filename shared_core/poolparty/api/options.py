"""Keyword options shared by Pool and Executor, split into engine options and portable resources."""
from __future__ import annotations

import inspect
import os
from typing import Any, Mapping

from ..engine import EngineOptions
from ..errors import UnknownResourceError
from ..resources import Resources
from ..retry import RetryPolicy

ENGINE_KEYWORDS = ("queue", "max_running", "work_dir", "work_root", "keep_work_dir", "python_path",
                   "polling_interval", "verbose", "scheduler_timeout", "max_resubmissions", "retry", "array")


def build_engine_options(max_running: int | None, options: Mapping[str, Any]) -> EngineOptions:
    """``queue=..., memory='4GB', ...`` -> EngineOptions; unknown names fail with the valid ones."""
    options = dict(options)
    resource_kw = {k: options.pop(k) for k in list(options) if k in Resources.names()}
    unknown = sorted(set(options) - set(ENGINE_KEYWORDS))
    if unknown:
        raise UnknownResourceError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; pool options are: "
            f"{', '.join(ENGINE_KEYWORDS)}; resource names are: {', '.join(Resources.names())}")
    retry = options.pop("retry", None) or RetryPolicy()
    if "max_resubmissions" in options:
        retry = RetryPolicy(**{**_policy_fields(retry), "max_resubmissions": options.pop("max_resubmissions")})
    if options.get("queue") is None:
        options["queue"] = os.environ.get("POOLPARTY_QUEUE", "local")
    return EngineOptions(max_running=options.pop("max_running", None) or max_running, retry=retry,
                         resources=Resources.from_mapping(resource_kw), **options)


def _policy_fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in inspect.signature(RetryPolicy).parameters}
