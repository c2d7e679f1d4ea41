"""Hatch metadata hook of the two plugin distributions: their version is the core's, read from
``shared_core/poolparty/_version.py`` (the one place it is set), and they require exactly that
version of the core, ``poolparty-hpc==<version>``, plus the ``requires`` listed in their own
``[tool.hatch.metadata.hooks.custom]`` table."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

REPO = Path(__file__).resolve().parent.parent
VERSION_FILE = REPO / "shared_core" / "poolparty" / "_version.py"
CORE_DISTRIBUTION = "poolparty-hpc"


def core_version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"$', VERSION_FILE.read_text(), re.MULTILINE)
    if match is None:
        raise ValueError(f"no __version__ = \"...\" line in {VERSION_FILE}")
    return match.group(1)


class CoreVersionHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        version = core_version()
        metadata["version"] = version
        metadata["dependencies"] = [f"{CORE_DISTRIBUTION}=={version}", *self.config.get("requires", [])]
