"""A per-process scratch folder, created on first use and removed by `close()`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bemcp.errors import ToolError


class Sandbox:
    def __init__(self) -> None:
        self._root: Path | None = None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix=f"bemcp-io-{os.getpid()}-")).resolve()
        return self._root

    def path(self, *parts: str) -> Path:
        """A path inside the sandbox; anything that would resolve outside it is refused."""
        path = self.root.joinpath(*parts).resolve()
        if not path.is_relative_to(self.root):
            raise ToolError("path escapes the sandbox")
        return path

    def close(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
