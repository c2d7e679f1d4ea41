"""Keyword options shared by Pool and Executor, split into engine options and portable resources."""
from __future__ import annotations

import inspect
import os
from typing import Any, Mapping

from poolparty import config
from poolparty.engine.engine import EngineOptions
from poolparty.errors import ConfigurationError, UnknownResourceError
from poolparty.queues import DEFAULT_QUEUE
from poolparty.resources import Resources, parse_memory
from poolparty.retry import RetryPolicy

ENGINE_KEYWORDS = ("queue", "max_running", "work_dir", "work_root", "keep_work_dir", "python_path",
                   "polling_interval", "verbose", "scheduler_timeout", "scheduler_calls_per_second",
                   "max_resubmissions", "retry", "array", "claim_chunks", "linger", "max_result_size", "progress",
                   "walltime_signal_lead")


def build_engine_options(max_running: int | None, options: Mapping[str, Any]) -> EngineOptions:
    """``queue=..., memory='4GB', ...`` -> EngineOptions; unknown names fail with the valid ones.
    Names not given (or given as None) take their value from the configuration (``poolparty.config``)."""
    options = dict(options)
    unknown = sorted(set(options) - set(ENGINE_KEYWORDS) - set(Resources.names()))
    if unknown:
        raise UnknownResourceError(
            f"unknown option(s) {', '.join(map(repr, unknown))}; pool options are: "
            f"{', '.join(ENGINE_KEYWORDS)}; resource names are: {', '.join(Resources.names())}")
    given = {k: v for k, v in options.items() if v is not None}
    if max_running:
        given.setdefault("max_running", max_running)
    configured = config.load().values
    if "retry" in given:  # an explicit policy is an argument: it beats a configured max_resubmissions
        configured.pop("max_resubmissions", None)
    options = {**configured, **given}
    resource_kw = {k: options.pop(k) for k in list(options) if k in Resources.names()}
    retry = options.pop("retry", None) or RetryPolicy()
    if "max_resubmissions" in options:
        retry = RetryPolicy(**{**_policy_fields(retry), "max_resubmissions": options.pop("max_resubmissions")})
    if options.get("queue") is None:
        options["queue"] = os.environ.get("POOLPARTY_QUEUE", DEFAULT_QUEUE)
    if options.get("max_result_size") is not None:
        options["max_result_size"] = _size_option(options["max_result_size"])
    return EngineOptions(max_running=options.pop("max_running", None) or max_running, retry=retry,
                         resources=Resources.from_mapping(resource_kw), **options)


def _size_option(value: Any) -> int:
    try:
        return parse_memory(value)  # type: ignore[return-value]
    except ConfigurationError:
        raise ConfigurationError(f"max_result_size={value!r} is not a size; write e.g. '100MB' or bytes "
                                 "as an int") from None


def _policy_fields(policy: RetryPolicy) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in inspect.signature(RetryPolicy).parameters}
