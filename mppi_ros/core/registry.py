"""A named registry (dynamics models, controllers, training tasks): one lookup that fails with
a ``ValueError`` listing the valid names, as brax's ``get_environment`` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item, for one ``kind`` of thing (used in the error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, Callable[[], T]] = {}

    def register(self, name: str, item: T, *, overwrite: bool = False) -> None:
        """Adds ``item`` under ``name``.

        Raises:
            ValueError: If the name is taken and ``overwrite`` is false.
        """
        if name in self._items and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def register_lazy(self, name: str, load: Callable[[], T]) -> None:
        """Adds ``name``, made by ``load()`` on its first lookup (e.g. an item read from files
        that need not exist at import time)."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._lazy[name] = load

    def get(self, name: str) -> T:
        """The item registered under ``name``.

        Raises:
            ValueError: For an unknown name; the message lists the valid names.
        """
        if name not in self._items and name in self._lazy:
            self._items[name] = self._lazy[name]()
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted({*self._items, *self._lazy})

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy
