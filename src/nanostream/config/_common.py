"""What the configuration modules share: YAML with positions, ``${ENV}``, argument checks.

YAML is read with PyYAML's *safe* loader only, and kept as a tree of plain values (dicts,
lists, strings, numbers) plus the ``FILE:LINE:COLUMN`` of every value, so that every
error can point at the place to fix. Nothing read from a configuration is evaluated.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from .._core.errors import ConfigError
from .._core.node import FunctionNode, NanoNode
from .._core.options import NODE_OPTIONS, check_node_option

__all__ = [
    "ConfigErrors",
    "Document",
    "Path",
    "Problems",
    "build_node",
    "check_arguments",
    "close_matches",
    "parse_yaml",
]

Path = tuple[str | int, ...]
"""Where a value sits in a document: the keys and indices leading to it."""

NodeKind = Literal["class", "function"]


class ConfigErrors(ConfigError):
    """Several configuration errors found at once; ``errors`` holds each of them.

    Its message has one line per error, each starting with its ``FILE:LINE:COLUMN``;
    ``location`` is the first error's.

    Example:
        >>> from nanostream import ConfigError
        >>> from nanostream.config import ConfigErrors
        >>> exc = ConfigErrors([ConfigError("a", location="p.yaml:1:1"),
        ...                     ConfigError("b", location="p.yaml:2:1")])
        >>> print(exc)
        p.yaml:1:1: a
        p.yaml:2:1: b
        >>> isinstance(exc, ConfigError), len(exc.errors)
        (True, 2)
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = self.errors[0]
        super().__init__(first.message, location=first.location)
        self.args = ("\n".join(str(e) for e in self.errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class Problems:
    """Collects configuration errors so that one check reports all of them."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, message: str, location: str | None) -> None:
        self.errors.append(ConfigError(message, location=location))

    def add_error(self, exc: ConfigError) -> None:
        if isinstance(exc, ConfigErrors):
            self.errors.extend(exc.errors)
        else:
            self.errors.append(exc)

    def raise_if_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)


def close_matches(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x' or 'y'?)`` for the candidates close to ``word``, else ``""``."""
    found = difflib.get_close_matches(word, sorted(set(candidates)), n=3, cutoff=0.6)
    if not found:
        return ""
    return " (did you mean " + " or ".join(repr(f) for f in found) + "?)"


# --------------------------------------------------------------------------- documents
@dataclass
class Document:
    """A parsed configuration: plain values plus the position of each one.

    ``where(path)`` is the ``FILE:LINE:COLUMN`` of the value at ``path`` (or of its
    nearest parent that has one); ``where(path, key=True)`` that of its key. A document
    made from a plain mapping (``class_factory(yaml.safe_load(...))``) knows no
    positions, and ``where`` returns ``None``.
    """

    data: Any
    filename: str = "<config>"
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    directory: str | None = None
    texts: dict[Path, str] = field(default_factory=dict)
    """The text of each value that ``${NAME}`` substitution made (before it was typed)."""

    def where(self, path: Path, *, key: bool = False) -> str | None:
        if not self.marks:
            return None
        if key and path in self.key_marks:
            line, col = self.key_marks[path]
            return f"{self.filename}:{line}:{col}"
        p = path
        while p and p not in self.marks:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return f"{self.filename}:{line}:{col}"

    def sub(self, path: Path) -> Document:
        """The document rooted at ``path`` (positions kept)."""
        data: Any = self.data
        for part in path:
            data = data[part]
        n = len(path)
        return Document(
            data,
            self.filename,
            {p[n:]: m for p, m in self.marks.items() if p[:n] == path},
            {p[n:]: m for p, m in self.key_marks.items() if p[:n] == path and len(p) > n},
            self.directory,
            {p[n:]: t for p, t in self.texts.items() if p[:n] == path},
        )


_VAR = re.compile(r"\$\$\{|\$\{(?:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})?")


def substitute(text: str, env: Mapping[str, str], location: str | None) -> str:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in ``text``; ``$${`` is a literal ``${``.

    As in a shell, the default is used when the variable is unset or empty.

    Example:
        >>> from nanostream.config._common import substitute
        >>> substitute("${HOME_DIR:-/tmp}/x and $${not_me}", {}, None)
        '/tmp/x and ${not_me}'
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise ConfigError(
                f"malformed variable in {text!r}: write ${{NAME}} or ${{NAME:-default}} "
                "(and $${ for a literal '${')",
                location=location,
            )
        value = env.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:
            return value
        raise ConfigError(
            f"environment variable {name} is not set; set it, or give a default with "
            f"${{{name}:-default}}",
            location=location,
        )

    return _VAR.sub(replace, text)


_PLAIN_TAGS = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")


def typed_scalar(text: str) -> Any:
    """``text`` typed as a plain YAML scalar: a number, boolean or null, else the string.

    Example:
        >>> from nanostream.config._common import typed_scalar
        >>> [typed_scalar(t) for t in ["10", "2.5", "true", "null", "?", "a: b"]]
        [10, 2.5, True, None, '?', 'a: b']
    """
    loader = yaml.SafeLoader("")
    try:
        tag = loader.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
        if tag == "tag:yaml.org,2002:str":
            return text
        return loader.construct_object(yaml.ScalarNode(tag, text))
    except yaml.YAMLError:  # pragma: no cover - a resolved tag always constructs
        return text
    finally:
        loader.dispose()


def _pos(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


MAX_DEPTH = 100
"""How deeply lists and mappings may nest in a configuration (aliases included)."""

MAX_ALIAS_VALUES = 10_000
"""How many values YAML aliases (``*name``) and merge keys (``<<``) may add, in all."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing nesting deeper than :data:`MAX_DEPTH` as it composes.

    PyYAML composes nested lists and mappings recursively: without this limit, deep
    nesting ends in a ``RecursionError`` that says nothing of where.
    """

    def __init__(self, text: str, filename: str) -> None:
        super().__init__(text)
        self.filename = filename
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            line, col = _pos(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"lists and mappings are nested more than {MAX_DEPTH} deep here; a "
                "configuration nests only a few levels: flatten the data (or read it from "
                "a file)",
                location=f"{self.filename}:{line}:{col}",
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class _Builder:
    """Turns a composed YAML node tree into plain values, recording positions."""

    def __init__(
        self, loader: yaml.SafeLoader, filename: str, env: Mapping[str, str] | None
    ) -> None:
        self.loader = loader
        self.filename = filename
        self.env = env
        self.marks: dict[Path, tuple[int, int]] = {}
        self.key_marks: dict[Path, tuple[int, int]] = {}
        self.active: set[int] = set()
        self.built: set[int] = set()  # the lists and mappings built once already
        self.expanded = 0  # values added by aliases and merge keys so far
        self.alias_at: str | None = None  # where the alias being expanded is used
        self.texts: dict[Path, str] = {}  # what ${NAME} substitution made, by path

    def where(self, node: yaml.Node) -> str:
        line, col = _pos(node.start_mark)
        return f"{self.filename}:{line}:{col}"

    def place(self, path: Path) -> str:
        """The ``FILE:LINE:COLUMN`` of the key or list that holds the value at ``path``."""
        if path in self.key_marks:
            line, col = self.key_marks[path]
            return f"{self.filename}:{line}:{col}"
        p = path[:-1]
        while p and p not in self.marks:
            p = p[:-1]
        line, col = self.marks.get(p, (1, 1))
        return f"{self.filename}:{line}:{col}"

    def count_expanded(self, n: int, location: str) -> None:
        """Count ``n`` values that aliases or merge keys add; refuse an alias bomb."""
        self.expanded += n
        if self.expanded > MAX_ALIAS_VALUES:
            raise ConfigError(
                f"YAML aliases and merge keys expand to more than {MAX_ALIAS_VALUES} values "
                "(nested aliases multiply: this looks like an alias bomb); write the values "
                "out, or use fewer aliases",
                location=self.alias_at or location,
            )

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > MAX_DEPTH:  # aliases can nest what the text does not
            raise ConfigError(
                f"lists and mappings are nested more than {MAX_DEPTH} deep here (through "
                "YAML aliases); flatten the data",
                location=self.alias_at or self.place(path),
            )
        if self.alias_at is not None:
            self.count_expanded(1, self.alias_at)
        elif id(node) in self.built and id(node) not in self.active:
            # an alias of a list or mapping: each use is a full copy, counted
            self.alias_at = self.place(path)
            try:
                return self.build(node, path)
            finally:
                self.alias_at = None
        self.marks[path] = _pos(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self.built.add(id(node))
        if id(node) in self.active:
            raise ConfigError("a YAML alias refers to itself", location=self.where(node))
        if node.tag not in _PLAIN_TAGS:
            raise ConfigError(
                f"unsupported YAML tag {node.tag!r}: a configuration holds plain values only "
                "(mappings, lists, strings, numbers, booleans, null)",
                location=self.where(node),
            )
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise ConfigError("unsupported YAML node", location=self.where(node))  # pragma: no cover

    def scalar(self, node: yaml.ScalarNode, path: Path) -> Any:
        value = self.loader.construct_object(node)
        if self.env is None or not isinstance(value, str) or "${" not in node.value:
            return value
        text = substitute(node.value, self.env, self.where(node))
        self.texts[path] = text
        if node.style is not None:  # quoted: stays a string
            return text
        # A plain scalar is typed after substitution: ``${SIZE:-100}`` is the number 100.
        return typed_scalar(text)

    def merged(self, node: yaml.MappingNode, path: Path, depth: int = 0) -> list[Any]:
        """The pairs that ``<<`` merge keys bring into ``node`` (counted as expansions)."""
        pairs: list[Any] = []
        for key_node, value_node in node.value:
            if key_node.tag != "tag:yaml.org,2002:merge":
                continue
            if depth >= MAX_DEPTH:
                raise ConfigError(
                    f"merge keys '<<' are chained more than {MAX_DEPTH} deep",
                    location=self.where(key_node),
                )
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise ConfigError(
                        "a merge key '<<' takes a mapping or a list of mappings",
                        location=self.where(source),
                    )
                found = [*self.merged(source, path, depth + 1), *self.own(source)]
                self.count_expanded(1 + len(found), self.where(key_node))
                pairs.extend(found)
        return pairs

    @staticmethod
    def own(node: yaml.MappingNode) -> list[Any]:
        """The pairs written in ``node`` itself (its merge keys left out)."""
        return [p for p in node.value if p[0].tag != "tag:yaml.org,2002:merge"]

    def key(self, node: yaml.Node) -> Any:
        """The value of a mapping key, which must be a plain scalar."""
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(
                "a mapping key must be a plain value (a name), not a list or mapping",
                location=self.where(node),
            )
        if node.tag == "tag:yaml.org,2002:value":  # a plain '=' key is the string '='
            node.tag = "tag:yaml.org,2002:str"
        return self.loader.construct_object(node)

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        # '<<' merge keys: a key written in the mapping wins over a merged one, and the
        # first mapping merged wins over the next.
        own = self.own(node)
        own_keys = {self.key(k) for k, _ in own}
        merged: set[Any] = set()
        for key_node, value_node in self.merged(node, path):
            key = self.key(key_node)
            if key not in merged and key not in own_keys:
                merged.add(key)
                self.key_marks[(*path, key)] = _pos(key_node.start_mark)
                result[key] = self.build(value_node, (*path, key))
        seen: dict[Any, yaml.Node] = {}
        for key_node, value_node in own:
            key = self.key(key_node)
            if key in seen:
                line, _ = _pos(seen[key].start_mark)
                raise ConfigError(
                    f"duplicate key {key!r} (first given on line {line}); keep only one",
                    location=self.where(key_node),
                )
            seen[key] = key_node
            self.key_marks[(*path, key)] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, (*path, key))
        return result


def _quote_hint(text: str, mark: Any) -> str:
    """A hint when a YAML syntax error is at an unquoted ``${`` (in a ``{...}`` or ``[...]``)."""
    if mark is None:
        return ""
    lines = text.splitlines()
    if mark.line >= len(lines) or lines[mark.line][max(mark.column - 1, 0) :].find("${") != 0:
        return ""
    return (
        '; inside {...} or [...] write a ${NAME} value in quotes, e.g. "${N:-5000}" (an '
        "argument is then converted to the type its parameter is annotated with)"
    )


def parse_yaml(
    text: str,
    filename: str = "<string>",
    *,
    env: Mapping[str, str] | None = None,
    directory: str | None = None,
) -> Document:
    """Parse YAML ``text`` with the safe loader, keeping each value's position.

    With ``env`` (a mapping such as ``os.environ``), ``${NAME}`` and ``${NAME:-default}``
    in string values are substituted; without it, strings are kept as written. Syntax
    errors are :class:`~nanostream.ConfigError` with ``FILE:LINE:COLUMN``.

    Example:
        >>> from nanostream.config._common import parse_yaml
        >>> doc = parse_yaml("a:\\n  b: ${N:-3}\\n", "x.yaml", env={})
        >>> doc.data, doc.where(("a", "b"))
        ({'a': {'b': 3}}, 'x.yaml:2:6')
    """
    try:
        loader = _Loader(text, filename)
    except yaml.YAMLError as exc:
        raise ConfigError(f"this is not valid YAML: {exc}", location=f"{filename}:1:1") from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = _pos(mark) if mark is not None else (1, 1)
            problem = exc.problem or "syntax error"
            context = ""
            if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
                at_line, at_col = _pos(exc.context_mark)
                context = f" ({exc.context} that starts at line {at_line}, column {at_col})"
            elif exc.context:
                context = f" ({exc.context})"
            raise ConfigError(
                f"this is not valid YAML: {problem}{context}{_quote_hint(text, mark)}",
                location=f"{filename}:{line}:{col}",
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"this is not valid YAML: {exc}", location=f"{filename}:1:1"
            ) from None
        if root is None:
            return Document(None, filename, {(): (1, 1)}, {}, directory)
        builder = _Builder(loader, filename, env)
        try:
            data = builder.build(root, ())
        except yaml.MarkedYAMLError as exc:  # a bad value for an explicit tag
            mark = exc.problem_mark or exc.context_mark
            line, col = _pos(mark) if mark is not None else (1, 1)
            raise ConfigError(
                f"invalid YAML value: {exc.problem}", location=f"{filename}:{line}:{col}"
            ) from None
    finally:
        loader.dispose()
    return Document(data, filename, builder.marks, builder.key_marks, directory, builder.texts)


# --------------------------------------------------------------------------- arguments
@dataclass(frozen=True)
class ArgumentCheck:
    """What is wrong with a set of keyword arguments for a callable."""

    unknown: tuple[str, ...]
    missing: tuple[str, ...]
    accepted: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.unknown and not self.missing


def check_arguments(
    target: Any, names: Iterable[str], *, for_missing: bool = True
) -> ArgumentCheck:
    """Check keyword arguments ``names`` against ``target``'s signature (if it has one)."""
    given = list(names)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return ArgumentCheck((), (), ())
    params = list(sig.parameters.values())
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    var_keyword = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
    takes_any = var_keyword is not None
    valid = set(named)
    is_node_class = isinstance(target, type) and issubclass(target, NanoNode)
    options = ("name", *node_options()) if is_node_class else ()
    if var_keyword is not None and var_keyword.name == "options" and is_node_class:
        # The convention of nanostream's nodes: ``**options`` are the node options.
        takes_any = False
        valid.update(options)
    unknown = () if takes_any else tuple(n for n in given if n not in valid)
    # What to list as "it takes": the arguments proper, not the node options.
    accepted = tuple(n for n in named if n not in options)
    missing: tuple[str, ...] = ()
    if for_missing:
        missing = tuple(
            p.name
            for p in params
            if p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)
            and p.name not in given
            # a misspelt argument is reported once, as unknown (with the right spelling)
            and not any(difflib.get_close_matches(u, [p.name], cutoff=0.6) for u in unknown)
        )
    return ArgumentCheck(unknown, missing, accepted)


def node_options() -> tuple[str, ...]:
    """The names of the options every node takes (``queue_size``, ``batch_size``, ...)."""
    return NODE_OPTIONS


def read_node_options(
    raw: Mapping[str, Any], label: str, where: Callable[[str], str | None], problems: Problems
) -> dict[str, Any]:
    """The node options given in ``raw`` (a node's mapping), each one checked."""
    options: dict[str, Any] = {}
    for key in node_options():
        if key in raw:
            problem = check_node_option(key, raw[key])
            if problem is not None:
                problems.add(f"{label}: {problem}", where(key))
            else:
                options[key] = raw[key]
    return options


def describe_argument_problems(check: ArgumentCheck, what: str) -> list[str]:
    """Messages for an :class:`ArgumentCheck` (``what`` names the node or class)."""
    messages = []
    takes = ", ".join(check.accepted) if check.accepted else "no arguments"
    for name in check.unknown:
        messages.append(
            f"{what} has no argument {name!r}{close_matches(name, check.accepted)}; "
            f"it takes: {takes}"
        )
    for name in check.missing:
        messages.append(f"{what} needs the argument {name!r}; add it to the node's arguments")
    return messages


def build_node(target: Any, kind: NodeKind, args: Mapping[str, Any], what: str) -> NanoNode:
    """Call a class or node constructor with ``args``, or wrap a node function, as a node.

    ``what`` describes the node in error messages. Errors are ``ConfigError`` (without a
    location: the caller adds it).
    """
    if kind == "function":
        if not callable(target):
            raise ConfigError(f"{what}: {target!r} is not a node function f(inp, outp)")
        return FunctionNode(target)
    if not callable(target):
        raise ConfigError(f"{what}: {target!r} is neither a NanoNode class nor a node constructor")
    try:
        made = target(**args)
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(
            f"{what} could not be built: {type(exc).__name__}: {exc}; check its arguments"
        ) from exc
    if isinstance(made, NanoNode):
        return made
    if callable(made):
        return FunctionNode(made)
    raise ConfigError(
        f"{what}: calling {target!r} returned {type(made).__name__}, which is neither a node "
        "nor a node function f(inp, outp); 'class:' names a NanoNode class or a node "
        "constructor (a callable that returns a node function)"
    )


def describe_target(target: Any) -> str:
    """``module:qualname`` of a class or function, for messages and YAML output."""
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}:{qualname}"


def is_identifier_like(name: object) -> bool:
    """True for a usable node name: a non-empty string without spaces or '>'."""
    return isinstance(name, str) and bool(name) and not re.search(r"[\s>\[\]]", name)
