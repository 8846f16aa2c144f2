"""Whether a configuration value has the type its field is annotated with, and how a message names that type:
for the entries of untyped dicts in the configs (dataset entries, Trainer arguments)."""

import types
import typing
from typing import Any


def fits(value: Any, annotation: Any) -> bool:
    """Whether `value` is of the type a config field is annotated with: classes, `X | None`, fixed-length and
    `tuple[X, ...]` tuples; an int is a float (YAML writes 1 for 1.0), a bool is not a number."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return any(fits(value, member) for member in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(fits(item, args[0]) for item in value)
        return len(value) == len(args) and all(fits(item, member) for item, member in zip(value, args))
    if origin is typing.Literal:
        return value in args
    if annotation is Any:
        return True
    if not isinstance(origin or annotation, type):  # a callable, a type variable: nothing to check by
        return True
    if annotation in (int, float) and isinstance(value, bool):
        return False
    if annotation is float:
        return isinstance(value, (int, float))
    if annotation is type(None):
        return value is None
    return isinstance(value, origin or annotation)


def type_name(annotation: Any) -> str:
    """'an int', 'a tuple[int, int] or None': the annotation as an error message names it."""
    union = typing.get_origin(annotation) in (types.UnionType, typing.Union)
    members = typing.get_args(annotation) if union else (annotation,)
    names = [member.__name__ if isinstance(member, type) else
             " or ".join(map(repr, typing.get_args(member))) if typing.get_origin(member) is typing.Literal else
             str(member).replace("typing.", "") for member in members if member is not type(None)]
    name = " or ".join(names + ["None"] * (type(None) in members))
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"
