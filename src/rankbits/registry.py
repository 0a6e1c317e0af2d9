"""One registry per study axis (task, model, method, bit-width).

Adding an entry is one module in the axis' sub-package that calls ``REGISTRY.register``;
the sub-package imports every module beside it, so no other file has to learn the new name.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A study asked for a name that no registry entry provides."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it a plain line
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, axis: str, package: str):
        self.axis = axis
        self._package = package
        self._entries: dict[str, T] = {}
        self._families: dict[str, tuple[Callable[[str], T], str]] = {}
        self._made: dict[str, T] = {}  # family members built on demand (``<prefix>:<argument>``)
        self._loaded = False
        # names this registry does not hold but a study declared (models or tasks from the
        # configuration): looked up on each miss, never stored, so a new study is seen as it is
        self.fallback: Callable[[str], T | None] | None = None

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.axis} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def register_family(self, prefix: str, make: Callable[[str], T], syntax: str) -> None:
        """Names ``<prefix>:<argument>`` built on demand by ``make(argument)``, which raises
        ValueError for a bad argument; ``syntax`` is how the names are listed (e.g. mixed:<preset>)."""
        self._families[prefix] = (make, syntax)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        pkg = importlib.import_module(self._package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self._package}.{mod.name}")

    def registered(self) -> set[str]:
        """The names registered (not those a study declares)."""
        self._load()
        return set(self._entries)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries) + sorted(syntax for _, syntax in self._families.values())

    def get(self, name: str) -> T:
        self._load()
        if name in self._entries:
            return self._entries[name]
        if name in self._made:
            return self._made[name]
        prefix, sep, arg = name.partition(":")
        if sep and prefix in self._families:
            make, syntax = self._families[prefix]
            try:
                self._made[name] = make(arg)
            except ValueError as exc:
                raise UnknownNameError(f"{self.axis} {name!r}: {exc} (form: {syntax})") from None
            return self._made[name]
        if self.fallback is not None:
            found = self.fallback(name)
            if found is not None:
                return found
        raise UnknownNameError(
            f"unknown {self.axis} {name!r}; valid {self.axis}s: {', '.join(self.names())}"
        )
