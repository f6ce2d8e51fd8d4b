"""Everything a process (API or worker) needs, built once from settings and passed down."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.artifacts.artifact_files import DataLayout, VerifiedArtifacts
from app.core.broker import make_celery
from app.core.db import make_engine, make_session_factory
from app.core.response_cache import ResponseCache
from app.core.settings import Settings
from app.ingest import Corpus, load_corpus


@dataclass
class ServiceContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    layout: DataLayout
    corpus_cache_size: int = 4
    verified_artifacts: VerifiedArtifacts = field(default_factory=VerifiedArtifacts, repr=False)
    _corpora: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _corpora_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    derived_cache_size: int = 16
    _derived: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _derived_compute_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def corpus(self, corpus_id: str, checksum: str) -> Corpus:
        """The stored corpus, verified against ``checksum`` on first load, then kept in a
        small per-process LRU (artifacts are immutable, so a cached copy never goes stale)."""
        key = (corpus_id, checksum)
        with self._corpora_lock:
            if key in self._corpora:
                self._corpora.move_to_end(key)
                return self._corpora[key]
        corpus = load_corpus(self.layout.corpus_dir(corpus_id), expected_checksum=checksum)
        with self._corpora_lock:
            self._corpora[key] = corpus
            while len(self._corpora) > self.corpus_cache_size:
                self._corpora.popitem(last=False)
        return corpus

    def derived(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` in a small per-process LRU: for values derived
        from immutable artifacts only (key them by id and checksum), e.g. a model's
        intertopic map. Computations run one at a time, so concurrent requests for one
        model (the map and a topic's terms) wait for a single computation, not repeat it."""
        with self._corpora_lock:
            if key in self._derived:
                self._derived.move_to_end(key)
                return self._derived[key]
        with self._derived_compute_lock:
            with self._corpora_lock:
                if key in self._derived:
                    return self._derived[key]
            value = compute()
            with self._corpora_lock:
                self._derived[key] = value
                while len(self._derived) > self.derived_cache_size:
                    self._derived.popitem(last=False)
        return value

    @cached_property
    def inline_ingest_slots(self) -> threading.BoundedSemaphore:
        """Uploads the API may ingest in its own process at once (INLINE_INGEST_CONCURRENCY)."""
        return threading.BoundedSemaphore(self.settings.inline_ingest_concurrency)

    @cached_property
    def response_cache(self) -> ResponseCache:
        """Finished response bodies of this process (API_RESPONSE_CACHE_BYTES); see
        app.core.response_cache for what a key must name."""
        return ResponseCache(self.settings.api_response_cache_bytes)

    @cached_property
    def celery(self) -> Celery:
        return make_celery(self.settings)

    def close(self) -> None:
        self.engine.dispose()


def build_context(settings: Settings) -> ServiceContext:
    """Create the data folders, the database engine and the session factory."""
    layout = DataLayout(settings.data_dir.resolve()).ensure()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow, pool_timeout_s=settings.db_pool_timeout_s)
    return ServiceContext(settings=settings, engine=engine, sessions=make_session_factory(engine), layout=layout)
