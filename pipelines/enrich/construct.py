"""Pydantic models built from values our own code has already checked, without re-validating them.

Validation is what pydantic is for at the boundaries (feeds, Kafka, files, the store); inside
enrichment an article's seventy entities are built by our code to the model's rules, and validating
each one again (and each copy crossing a process boundary) costs more than finding it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def trusted(cls: type[M], values: Mapping[str, Any], fields_set: Iterable[str] | None = None) -> M:
    """An instance of `cls` holding `values` (every field, already valid), as `model_construct` makes
    it but without its per-field defaults handling. For models without private attributes or extras."""
    instance = cls.__new__(cls)
    _set(instance, "__dict__", dict(values))
    _set(instance, "__pydantic_fields_set__", set(values if fields_set is None else fields_set))
    _set(instance, "__pydantic_extra__", None)
    _set(instance, "__pydantic_private__", None)
    return instance
