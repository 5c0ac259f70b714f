"""Where a callable is defined, and whether that is the user's own code.

A pipeline file may call a plain function of a module it declares under ``imports:`` only
if that function is the user's own code: defined in a file of a declared module, and not
part of Python's standard library or of an installed third-party distribution (an
editable install of the user's own project counts as the user's code). This module
answers those questions from file paths and installed metadata, without calling anything.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import json
import os
import site
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["defining_file", "not_own_code", "within_modules"]


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _module_file(name: str) -> str | None:
    file = getattr(sys.modules.get(name), "__file__", None)
    return _real(file) if isinstance(file, str) else None


def defining_file(obj: Any) -> str | None:
    """The real path of the file that defines ``obj``, or ``None`` if it has none.

    For a Python function (or method) it is the file of its code, whatever its
    ``__module__`` says; for anything else (a class, a callable object, a function written
    in C), the file of the module its ``__module__`` names. Code made by ``exec`` (a file
    name such as ``<string>``) counts as its module's.

    Example:
        >>> import json, yaml
        >>> from nanostream.config._origin import defining_file
        >>> defining_file(json.dumps) == defining_file(json.loads)
        True
        >>> defining_file(yaml.unsafe_load).endswith("__init__.py")
        True
    """
    function = getattr(obj, "__func__", obj)  # a bound method: its function
    code = getattr(function, "__code__", None) if inspect.isfunction(function) else None
    if code is not None and not code.co_filename.startswith("<"):
        return _real(code.co_filename)
    module = getattr(obj, "__module__", None)
    return _module_file(module) if isinstance(module, str) else None


def _module_root(name: str) -> str | None:
    """The file of module ``name`` or, for a package, its directory."""
    file = _module_file(name)
    if file is None:
        return None
    if os.path.basename(file).startswith("__init__."):
        return os.path.dirname(file)
    return file


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def within_modules(file: str, modules: Iterable[str]) -> bool:
    """Whether ``file`` is the file of one of ``modules`` or lies in one of their packages.

    Example:
        >>> import nanostream.nodes.generic as generic
        >>> from nanostream.config._origin import defining_file, within_modules
        >>> within_modules(defining_file(generic.grep), ["nanostream"])
        True
        >>> within_modules(defining_file(generic.grep), ["json"])
        False
    """
    for module in modules:
        root = _module_root(module)
        if root is not None and _inside(file, root):
            return True
    return False


def _installed_roots() -> list[str]:
    """The directories into which packages are installed for the running interpreter."""
    roots: set[str] = set()
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        roots.update(paths[key] for key in ("purelib", "platlib") if key in paths)
    roots.update(site.getsitepackages() if hasattr(site, "getsitepackages") else ())
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        roots.add(user)
    return sorted(_real(r) for r in roots)


def _stdlib_roots() -> list[str]:
    roots: set[str] = set()
    for scheme_vars in ({}, {"installed_base": sys.base_prefix, "base": sys.base_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars) if scheme_vars else sysconfig.get_paths()
        roots.update(paths[key] for key in ("stdlib", "platstdlib") if key in paths)
    return sorted(_real(r) for r in roots)


def _editable(dist: importlib.metadata.Distribution) -> bool:
    """Whether ``dist`` is an editable install (PEP 610's ``direct_url.json``)."""
    text = dist.read_text("direct_url.json")
    if not text:
        return False
    try:
        info = json.loads(text)
    except ValueError:
        return False
    dir_info = info.get("dir_info") if isinstance(info, dict) else None
    return isinstance(dir_info, dict) and dir_info.get("editable") is True


@functools.lru_cache(maxsize=4)
def _distributions_by_package(search_path: tuple[str, ...]) -> Mapping[str, list[str]]:
    """``packages_distributions()`` for the given ``sys.path`` (it reads every install)."""
    del search_path  # the cache key: another path may show other distributions
    return importlib.metadata.packages_distributions()


def _distribution_holding(file: str, top: str) -> str | None:
    """The installed, non-editable distribution that ships ``file`` (of package ``top``)."""
    for name in _distributions_by_package(tuple(sys.path)).get(top, []):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if _editable(dist):
            continue  # the user's own project, installed with pip install -e
        files = dist.files
        if files is None:
            return name  # it does not say which files: it may well be this one
        if any(_real(str(dist.locate_file(f))) == file for f in files):
            return name
    return None


def not_own_code(file: str | None, module: str) -> str | None:
    """Why the code in ``file`` (of module ``module``) is not the user's own, or ``None``.

    It is not when it has no file, lies in the standard library or in a site-packages or
    dist-packages directory of the running interpreter, or is shipped by an installed
    distribution that is not an editable install.

    Example:
        >>> import yaml
        >>> from nanostream.config._origin import defining_file, not_own_code
        >>> not_own_code(defining_file(yaml.unsafe_load), "yaml")
        "part of the installed distribution 'PyYAML'"
        >>> not_own_code(None, "__main__")
        'not defined in a file'
    """
    if file is None:
        return "not defined in a file"
    for root in _stdlib_roots():
        if _inside(file, root) and not any(
            _inside(file, r) and len(r) > len(root) for r in _installed_roots()
        ):
            return "part of Python's standard library"
    top = module.split(".", maxsplit=1)[0]
    dist = _distribution_holding(file, top)
    if dist is not None:
        return f"part of the installed distribution {dist!r}"
    for root in _installed_roots():
        if _inside(file, root):
            return f"installed under {root}"
    parts = file.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return "installed in a site-packages directory"
    return None
