"""Typed records read from JSON (model.json's entries) or from a checkpoint (the run state): each key checked
against its dataclass field's type, the keys a version does not know kept and written back as they were.

Standard library only, so serving without torch can read them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any


class Entry:
    """A typed model.json entry: `from_json` checks and converts each known key and keeps the others in `extra`;
    `to_json` writes them all back as they were read (a field left empty is left out unless the file had it).

    A key whose value does not fit its field is a damaged file (ValueError naming it) for entries serving relies
    on; for records kept for display (`STRICT = False`: `Metrics`, `Recipe`) it stays in `extra`, written back as
    it was, and the field is left empty."""

    STRICT = True
    extra: dict[str, Any]
    given: frozenset[str]  # the fields the file had, None or not

    @classmethod
    def from_json(cls, d: Any) -> Any:
        if not isinstance(d, dict):
            raise ValueError(f"not a dict but {type(d).__name__}")
        hints = typing.get_type_hints(cls)
        names = [k for k in field_names(cls) if k in d and (cls.STRICT or fits(d[k], hints[k]))]
        kw = {k: typed(k, d[k], hints[k]) for k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**kw, extra=extra, given=frozenset(names))  # type: ignore[call-arg]

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in field_names(type(self))}
        return {**{k: v for k, v in d.items() if v is not None or k in self.given}, **self.extra}


def field_names(cls: type) -> list[str]:
    "A dataclass's own fields, without `Entry`'s bookkeeping (`extra`, `given`)."
    return [f.name for f in dataclasses.fields(cls) if f.name not in ("extra", "given")]  # type: ignore[arg-type]


def fits(v: Any, hint: Any) -> bool:
    """Whether a value read from JSON or a checkpoint has a dataclass field's outer type (`int | None`, `float`,
    `list[str]`, ...): an int is a float, a bool is no number; the items of a list or dict are not checked."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # `X | None`
        return any(fits(v, a) for a in typing.get_args(hint))
    kind = typing.get_origin(hint) or hint
    if kind is Any or not isinstance(kind, type):  # Any, a TypeVar...: nothing to check
        return True
    kinds = (int, float) if kind is float else (kind,)
    return isinstance(v, kinds) and not (isinstance(v, bool) and kind is not bool)


def typed(key: str, v: Any, hint: Any) -> Any:
    "`v` as the field's type (`fits`; a float field's int as float); ValueError naming `key` if it does not fit."
    if not fits(v, hint):
        raise ValueError(f"{key} = {v!r} is not a {hint.__name__ if isinstance(hint, type) else hint}")
    return float(v) if isinstance(v, int) and not isinstance(v, bool) and fits(0.5, hint) else v
