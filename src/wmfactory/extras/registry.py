"""The registries of pluggable parts (embedding file readers, embedding losses, prediction heads): a dict of
name -> object, filled by a decorator."""

from typing import Callable, TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T]) -> Callable[..., Callable[[T], T]]:
    """`register = registrar(TABLE)`; then `@register("name", "other_name")` puts the decorated object in TABLE
    under each name and returns it unchanged."""

    def register(*names: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            for name in names:
                table[name] = item
            return item

        return decorator

    return register
