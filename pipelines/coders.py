"""How Beam encodes our models between stages, and how it guesses their size.

Without a registered coder Beam pickles any element it has to encode, and it also encodes a sample of
every step's output only to estimate its byte size for its metrics: the first ten elements of each
output in every bundle, then a few more. Among those samples are whole batches: pickling a batch of
200 enriched articles (seventy entities each) takes ~60 ms. With Beam's adaptive batch sizing
(see `transforms.fixed_batches`) this was much of the ~1 ms per article that the pipeline's process
spent over a plain loop doing the same work (docs/performance.md). `ModelCoder` encodes as before
(pickle keeps the model's own state) and estimates the size from the text fields' lengths instead.
"""

from __future__ import annotations

import pickle
from typing import Any

import apache_beam as beam
from pydantic import BaseModel

from schemas import Alert, Article, DeadLetter, RawArticle

_NESTED_ITEM_BYTES = 64  # an entity, place or topic tag, roughly, in the estimate


class ModelCoder(beam.coders.Coder):
    """A pydantic model: pickled; its size estimated without encoding it."""

    def encode(self, value: BaseModel) -> bytes:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, encoded: bytes) -> Any:
        return pickle.loads(encoded)

    def estimate_size(self, value: BaseModel) -> int:
        return estimate_size(value)

    # Beam's Coder already gives equality by class, and non-determinism: a value coder, never a key's.


def estimate_size(value: BaseModel) -> int:
    """Bytes, roughly: the text fields' lengths, a fixed cost per list item and per other field."""
    size = 0
    for field_value in value.__dict__.values():
        if isinstance(field_value, str):
            size += len(field_value)
        elif isinstance(field_value, list):
            size += _NESTED_ITEM_BYTES * len(field_value)
        else:
            size += 8
    return size


MODELS: tuple[type[BaseModel], ...] = (RawArticle, Article, Alert, DeadLetter)


def register_model_coders() -> None:
    """Beam's registry maps each model (and lists and tuples of them) to `ModelCoder`; idempotent. Called
    where a pipeline is built, before its coders are inferred from the declared types."""
    for model in MODELS:
        beam.coders.registry.register_coder(model, ModelCoder)
