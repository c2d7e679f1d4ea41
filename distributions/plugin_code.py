"""Hatch build hook of the two plugin distributions: their code lives in ``executors/<package>``,
outside the directory of their ``pyproject.toml``.

A regular wheel gets the package copied in (``force_include``); an editable install gets nothing
here and finds the package through ``dev-mode-dirs`` (a ``.pth`` line naming ``executors/``), so
edits in the tree are live, as they are for the core. (A static ``force-include`` table would copy
the files into editable installs too.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXECUTORS = Path(__file__).resolve().parent.parent / "executors"


class PluginCodeHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            return
        package = self.config["package"]
        source = EXECUTORS / package
        if not (source / "__init__.py").is_file():
            raise FileNotFoundError(f"{source}/__init__.py: the plugin's code is not where {__file__} expects it")
        build_data["force_include"][str(source)] = package
