"""How vmtest declares what can be configured: once, as dataclass fields.

``option(...)`` returns a dataclass field whose metadata (a :class:`Declaration`)
carries the option's validator and, where they apply, its NixOS name and proof
test (``virtualisation.*``) or its command-line flag, environment variable and
ini key (run settings). Its documentation is the field's docstring, the string
right below it, where Sphinx and editors read it too (:func:`documented` puts
it into the declaration and fails on a declared field without one). Everything
else derives from
the declarations: validation (:func:`validate_fields`), building from a dict
with "unknown key, did you mean" errors (:func:`from_dict`, :func:`record`),
``help()`` text (:func:`documented`) and the generated ``docs/options.md``
(:mod:`vmtest.config.docs`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import linecache
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar, cast

from vmtest.core.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Validator = Callable[[str, Any], Any]
T = TypeVar("T", bound="DataclassInstance")

_KEY = "vmtest"  # the metadata key of a declared field


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable mapping (option values must hash: configs are cache keys)."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._data = dict(sorted((items or {}).items()))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(tuple(self._data.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other)

    def __repr__(self) -> str:
        return repr(self._data)


@dataclass(frozen=True)
class Declaration:
    """What is declared about one option besides its name, type and default."""

    validate: Validator
    nixos: str | None = None  # the NixOS qemu-vm.nix option it stands for
    proof: str | None = None  # PATH::TEST that shows it works
    flag: str | None = None  # command-line flag (run settings)
    env: str | None = None  # environment variable (run settings)
    ini: str | None = None  # pytest ini key (run settings)
    default_text: str | None = None  # the default as the docs show it, when repr() would mislead
    env_default: Callable[[Mapping[str, str]], Any] | None = None  # a default computed from the environment
    doc: str = ""  # the field's docstring, on one line (filled in by :func:`documented`)

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The allowed values, when the validator is a choice (see :func:`vmtest.config.validators.choice`)."""
        return getattr(self.validate, "choices", None)


def option(
    default: Any,
    validate: Validator,
    *,
    nixos: str | None = None,
    proof: str | None = None,
    flag: str | None = None,
    env: str | None = None,
    ini: str | None = None,
    default_text: str | None = None,
    env_default: Callable[[Mapping[str, str]], Any] | None = None,
    factory: bool = False,
) -> Any:
    """Declare one option: its default (a factory when ``factory``), validator and names; its documentation is
    the docstring below the field.

    ``env_default(environ)`` computes the default from environment variables (given ``os.environ`` when the
    dataclass is built directly, the resolver's environment mapping otherwise); ``default`` is then unused.
    """
    meta = {_KEY: Declaration(validate, nixos, proof, flag, env, ini, default_text, env_default)}
    if env_default is not None:
        return field(default_factory=lambda: env_default(os.environ), metadata=meta)
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def camel_case(name: str) -> str:
    """``use_efi_boot`` -> ``useEfiBoot``: how qemu-vm.nix spells the name of a vmtest option."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def options_of(prefix: str, tests: str, nixos: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator, under ``@dataclass``, for a record whose options are named ``prefix.<name>``.

    Each instance validates its declared fields first (:func:`validate_fields`, errors naming
    ``prefix.name``), then runs the class's own ``__post_init__`` if it has one. A proof that names a test
    alone is in the module ``tests``. With ``nixos``, an option that names no NixOS option is
    ``prefix.camelCase(name)`` (qemu-vm.nix's spelling), so only the exceptions are written out.
    """

    def decorate(cls: type[T]) -> type[T]:
        for name in cls.__annotations__:
            f = cls.__dict__.get(name)
            if not isinstance(f, dataclasses.Field) or _KEY not in f.metadata:
                continue
            decl = declaration(f)
            proof = f"{tests}::{decl.proof}" if decl.proof and "::" not in decl.proof else decl.proof
            nixos_name = decl.nixos or (f"{prefix}.{camel_case(name)}" if nixos else None)
            f.metadata = MappingProxyType({**f.metadata, _KEY: replace(decl, proof=proof, nixos=nixos_name)})
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self: Any) -> None:
            validate_fields(self, prefix)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # type: ignore[attr-defined]  # dataclass() wires it into __init__
        return cls

    return decorate


def declaration(f: dataclasses.Field[Any]) -> Declaration:
    """The declaration of a field made with :func:`option`."""
    return cast(Declaration, f.metadata[_KEY])  # field metadata is an untyped mapping; option() put it there


def declared(cls: DataclassInstance | type[DataclassInstance]) -> list[tuple[dataclasses.Field[Any], Declaration]]:
    """The declared fields of a dataclass (or of an instance), in declaration order."""
    return [(f, declaration(f)) for f in dataclasses.fields(cls) if _KEY in f.metadata]


def is_declared(cls: object) -> TypeGuard[type[DataclassInstance]]:
    return isinstance(cls, type) and dataclasses.is_dataclass(cls) and bool(declared(cls))


def default_of(f: dataclasses.Field[Any]) -> Any:
    """The default value of a field (calling its factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def validate_fields(obj: Any, prefix: str = "") -> None:
    """Run every declared field's validator and store the value it returns (the normal form).

    Errors name the field as ``prefix.name`` (just ``name`` without a prefix).
    """
    for f, decl in declared(obj):
        name = f"{prefix}.{f.name}" if prefix else f.name
        object.__setattr__(obj, f.name, decl.validate(name, getattr(obj, f.name)))


def check_keys(
    names: Sequence[str], values: Mapping[str, Any], where: Callable[[str], str], why: str, known: str
) -> None:
    """Reject a key of ``values`` that is not in ``names``: ConfigError naming ``where(key)``, with a
    "did you mean" hint or, when nothing is close, the list of ``known`` names."""
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known {known}: " + ", ".join(names)
            raise ConfigError(where(key), values[key], why, hint)


def field_names(cls: DataclassInstance | type[DataclassInstance]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(cls: type[T], prefix: str, values: Mapping[str, Any]) -> T:
    """Build a declared dataclass from a dict of options (unknown options are errors with a hint)."""
    check_keys(field_names(cls), values, lambda key: f"{prefix}.{key}", "unknown option", "options")
    return cls(**values)


def options_record(cls: type[T], expected: str) -> Callable[[str, Any], T]:
    """The validator of an option whose value is a record of options (``qemu``, ``efi``, ``tpm``): an instance
    of ``cls`` as it is, a dict built into one (unknown options are errors with a hint); ``expected``: the
    error's wording for anything else."""

    def check(name: str, value: Any) -> T:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(name, value, expected)
        return from_dict(cls, name, value)

    return check


def record(cls: type[T], name: str, value: Any, aliases: Mapping[str, str] | None = None) -> T:
    """Build the record ``cls`` from an instance or a dict (unknown keys are errors with a hint)."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(name, value, f"expected a dict or vmtest.{cls.__name__}")
    values = {(aliases or {}).get(key, key): item for key, item in value.items()}
    check_keys(field_names(cls), values, lambda key: f"{name}.{key}", "unknown key", "keys")
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in values
        ]
        raise ConfigError(name, dict(value), f"missing {', '.join(missing) or 'keys'}: {exc}") from None


@functools.lru_cache(maxsize=1)  # the classes of one module are declared one after the other
def _module_tree(filename: str) -> ast.Module:
    """A source file's syntax tree, parsed once for the declared classes it holds (only the last file is kept)."""
    return ast.parse("".join(linecache.getlines(filename)))


def _class_node(tree: ast.AST, qualname: str) -> ast.ClassDef | None:
    """The class statement of ``qualname`` in ``tree``: each name of the path is looked for below the last
    one found (a class in a function, or in a ``with`` block inside it, as well)."""
    node = tree
    for name in qualname.split("."):
        if name == "<locals>":
            continue
        scope = node
        found = (c for c in ast.walk(scope) if isinstance(c, ast.ClassDef | ast.FunctionDef) and c.name == name)
        inner = next((c for c in found if c is not scope), None)
        if inner is None:
            return None
        node = inner
    return node if isinstance(node, ast.ClassDef) else None


def attribute_docs(cls: type) -> dict[str, str] | None:
    """The docstrings of ``cls``'s annotated attributes (a string literal right below one, as PEP 257 calls
    them), each whitespace-normalised to one line; None when the class's source is not there to read (an
    install without .py files: the options then have no documentation, nothing else changes). Each source
    file is parsed once (:func:`inspect.getsource` parses the whole module for every class it finds)."""
    try:
        filename = inspect.getsourcefile(cls)
    except TypeError:
        return None
    found = _class_node(_module_tree(filename), cls.__qualname__) if filename else None
    if found is None:
        return None
    body = found.body
    docs = {}
    for stmt, after in zip(body, body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def documented(cls: type[T]) -> type[T]:
    """Class decorator, outermost: each declared field's documentation is its docstring (a field without one
    is a TypeError at import); the fields and their documentation are appended to the class docstring."""
    docs = attribute_docs(cls)
    for f, decl in declared(cls):
        if docs is None:
            break
        doc = docs.get(f.name)
        if not doc:
            raise TypeError(f"{cls.__qualname__}.{f.name}: an option needs a docstring (a string right below it)")
        f.metadata = MappingProxyType({**f.metadata, _KEY: replace(decl, doc=doc)})
    lines = [f"- ``{f.name}``: {decl.doc}" for f, decl in declared(cls)]
    cls.__doc__ = (
        (cls.__doc__ or "").rstrip()
        + "\n\n    Options (declared below, see docs/options.md):\n\n"
        + "\n".join(f"    {line}" for line in lines)
        + "\n"
    )
    return cls
