"""Per-task resources from task tags: ``@task(tags=["poolparty:memory=8GB", "poolparty:cpus=4"])``.

Tags are what Prefect already carries from ``@task``, ``task.with_options(tags=...)`` and
``with prefect.tags(...)`` to the runner, so no new API is needed. Names and values are poolparty's
portable ones (:class:`poolparty.Resources`); an unknown name fails the submission with the valid
names. Task runs with different resources go to different arrays.
"""
from __future__ import annotations

from typing import Iterable

from poolparty import Resources
from poolparty.errors import ConfigurationError

TAG_PREFIX = "poolparty:"


def resources_from_tags(tags: Iterable[str], base: Resources) -> Resources:
    """``base`` overridden by every ``poolparty:<name>=<value>`` tag (``extra`` may repeat)."""
    values: dict[str, object] = {}
    extra: list[str] = []
    for tag in sorted(tags):
        if not tag.startswith(TAG_PREFIX):
            continue
        name, sep, value = tag[len(TAG_PREFIX):].partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigurationError(f"task tag {tag!r} is not of the form '{TAG_PREFIX}<name>=<value>', "
                                     f"e.g. '{TAG_PREFIX}memory=4GB'")
        if name == "extra":
            extra.append(value)
        elif name in ("cpus", "gpus"):
            try:
                values[name] = int(value)
            except ValueError:
                raise ConfigurationError(f"task tag {tag!r}: {name} must be an integer") from None
        else:
            values[name] = value
    if extra:
        values["extra"] = tuple(base.extra) + tuple(extra)
    return Resources.from_mapping(values, base=base) if values else base
