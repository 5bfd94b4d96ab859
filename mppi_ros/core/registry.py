"""A named registry (dynamics models, controllers, training tasks): one lookup that fails with
a ``ValueError`` listing the valid names, as brax's ``get_environment`` does."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> item, for one ``kind`` of thing (used in the error messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T, *, overwrite: bool = False) -> None:
        """Adds ``item`` under ``name``.

        Raises:
            ValueError: If the name is taken and ``overwrite`` is false.
        """
        if name in self._items and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item

    def get(self, name: str) -> T:
        """The item registered under ``name``.

        Raises:
            ValueError: For an unknown name; the message lists the valid names.
        """
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
