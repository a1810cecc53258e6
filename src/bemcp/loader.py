"""Finding the user's `App` from what `bemcp serve TARGET` names.

TARGET is `module:attr`, `module` (its one App), `path/to/file.py` or `path/to/file.py:attr`. As with uvicorn's
`--app-dir`, the app folder (the current one by default) is put first on the import path, so a module next to
the user is found. A file inside a package is imported under its dotted name, so its relative imports work.
Every failure is a `ConfigError` of one line; the traceback of an import that raised is logged at debug level.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import inspect
import logging
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from bemcp.app import App
from bemcp.config import ConfigError

T = TypeVar("T")
log = logging.getLogger("bemcp.serve")

# True while `bemcp serve` imports the user's module, so that an unguarded `app.run()` at its end does not start
# a second server inside the import.
_importing: contextvars.ContextVar[bool] = contextvars.ContextVar("bemcp_importing_target", default=False)


def importing_target() -> bool:
    return _importing.get()


def split_target(target: str) -> tuple[str, str | None]:
    """`file.py:attr` -> ("file.py", "attr"); a colon followed by no dotted name is part of the source."""
    if target.endswith(":"):
        raise ConfigError(f"{target}: nothing after ':' (expected MODULE:ATTR or FILE.py:ATTR)")
    head, sep, tail = target.rpartition(":")
    if sep and tail and all(part.isidentifier() for part in tail.split(".")):
        if not head:
            raise ConfigError(f"{target}: nothing before ':' (expected MODULE:ATTR or FILE.py:ATTR)")
        return head, tail
    return target, None


def _is_file(source: str, folder: Path) -> bool:
    return source.endswith(".py") or "/" in source or "\\" in source or (folder / source).is_file()


def load_app(target: str | None, app_dir: str = ".") -> App:
    """Import the target and return its App (None: the built-in app)."""
    if not target:
        from bemcp.tools.builtin import default_app

        return default_app()
    folder = Path(app_dir).resolve()
    if not folder.is_dir():
        raise ConfigError(f"--app-dir {app_dir}: no such folder")
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    source, attr = split_target(target.strip())
    load = _import_file if _is_file(source, folder) else _import_module
    module = load(target, source, folder)
    return _find_app(target, module, attr)


def _import_module(target: str, name: str, folder: Path) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"{target}: not a module name, a .py file or MODULE:ATTR")
    try:
        return _guarded(target, name, lambda: importlib.import_module(name))
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            hint = f"{name}.py" if "." not in name else name.replace(".", "/") + ".py"
            raise ConfigError(
                f"{target}: no module named {e.name!r} in {folder} or on the import path "
                f"(is {hint} in this folder? --app-dir names another)"
            ) from None
        raise ConfigError(f"{target}: importing {name} failed: {_missing(e)}") from None


def _missing(e: ModuleNotFoundError) -> str:
    return f"{e} (is it installed for {sys.executable}?)"


def _import_file(target: str, source: str, folder: Path) -> ModuleType:
    path = (folder / source).resolve() if not Path(source).is_absolute() else Path(source)
    if not path.exists():
        raise ConfigError(f"{target}: no such file {source}")
    if path.is_dir():
        raise ConfigError(f"{target}: {source} is a folder; name a .py file in it, or a module")
    if path.suffix != ".py":
        raise ConfigError(f"{target}: {source} is not a .py file")
    parts = [] if path.stem == "__init__" else [path.stem]
    root = path.parent
    while (root / "__init__.py").exists():  # inside a package: import it as package.module
        parts.insert(0, root.name)
        root = root.parent
    name = ".".join(parts)
    own_name = "bemcp_target_" + re.sub(r"\W", "_", path.stem)
    if not parts or not all(p.isidentifier() for p in parts):  # my-server.py cannot be imported by name
        return _load_by_location(target, own_name, path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() != path:
        # The name is taken (a file called json.py, say): load the file under a name of its own.
        return _load_by_location(target, own_name, path)
    try:
        module = _guarded(target, source, lambda: importlib.import_module(name))
    except ModuleNotFoundError as e:
        raise ConfigError(f"{target}: importing {source} failed: {_missing(e)}") from None
    if Path(getattr(module, "__file__", "") or "").resolve() != path:  # another module of that name came first
        return _load_by_location(target, own_name, path)
    return module


def _load_by_location(target: str, name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{target}: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader = spec.loader
    try:
        _guarded(target, str(path), lambda: loader.exec_module(module))
    except ModuleNotFoundError as e:
        raise ConfigError(f"{target}: importing {path.name} failed: {_missing(e)}") from None
    return module


def _guarded(target: str, what: str, load: Callable[[], T]) -> T:
    """Run an import; anything it raises (but a missing module, left to the caller) is one line."""
    token = _importing.set(True)
    try:
        return load()
    except ModuleNotFoundError:
        raise
    except SyntaxError as e:
        raise ConfigError(f"{target}: {e.filename or what}:{e.lineno}: syntax error: {e.msg}") from None
    except (Exception, SystemExit) as e:
        log.debug("importing %s failed", what, exc_info=True)
        frames = [f for f in traceback.extract_tb(e.__traceback__) if not _ours(f.filename)]
        at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise ConfigError(f"{target}: importing {what} raised {type(e).__name__}{at}: {e}") from None
    finally:
        _importing.reset(token)


def _ours(filename: str) -> bool:
    return filename == __file__ or filename.startswith("<frozen importlib")


def _apps_in(module: ModuleType) -> dict[str, App]:
    return {k: v for k, v in vars(module).items() if isinstance(v, App)}


def _find_app(target: str, module: ModuleType, attr: str | None) -> App:
    label = module.__name__
    if attr is None:
        apps = _apps_in(module)
        if len(apps) == 1:
            return next(iter(apps.values()))
        if not apps:
            raise ConfigError(f"{target}: {label} has no bemcp.App at module level; name one with {target}:ATTR")
        names = ", ".join(f"{target}:{k}" for k in sorted(apps))
        raise ConfigError(f"{target}: {label} has {len(apps)} bemcp.Apps; name one: {names}")
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = ", ".join(sorted(_apps_in(module))) or "none"
            raise ConfigError(f"{target}: {label} has no attribute {attr!r} (its bemcp.Apps: {found})")
        obj = getattr(obj, part)
    if isinstance(obj, App):
        return obj
    if _factory(obj):
        made = _guarded(target, f"{label}:{attr}()", obj)
        if isinstance(made, App):
            return made
        raise ConfigError(f"{target}: {attr}() returned a {type(made).__name__}, not a bemcp.App")
    raise ConfigError(
        f"{target}: {label}:{attr} is a {type(obj).__name__}, not a bemcp.App "
        "(or a function that takes no arguments and returns one)"
    )


def _factory(obj: Any) -> bool:
    """A plain function (or callable) that can be called with no arguments: `create_app()`."""
    if not callable(obj) or isinstance(obj, type) or inspect.iscoroutinefunction(obj):
        return False
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values())
