import io

import pytest

from app.ingest import ingest, load_corpus
from gpu.errors import InvalidInput


@pytest.fixture
def roots(tmp_path):
    """(corpora folder, tmp_root); tests assert tmp_root is left empty."""
    corpora, tmp_root = tmp_path / "corpora", tmp_path / "tmp"
    corpora.mkdir()
    tmp_root.mkdir()
    return corpora, tmp_root


@pytest.fixture
def run_ingest(roots):
    """ingest byte payloads: run_ingest([(name, bytes), ...], **kwargs) -> (info, corpus)."""
    corpora, tmp_root = roots
    counter = iter(range(10**6))

    def run(named_payloads, **kwargs):
        dest = corpora / f"c{next(counter)}"
        sources = [(name, io.BytesIO(data)) for name, data in named_payloads]
        info = ingest(sources, dest, tmp_root=tmp_root, **kwargs)
        assert list(tmp_root.iterdir()) == []
        return info, load_corpus(dest)

    return run


@pytest.fixture
def assert_fails(roots):
    """assert_fails(named_payloads, match, **kwargs): ValueError matching ``match`` and
    nothing left behind (no corpus folder, no temp debris)."""
    corpora, tmp_root = roots

    def check(named_payloads, match, **kwargs):
        sources = [(name, io.BytesIO(data)) for name, data in named_payloads]
        before = sorted(corpora.iterdir())
        with pytest.raises(InvalidInput, match=match):
            ingest(sources, corpora / "bad", tmp_root=tmp_root, **kwargs)
        assert sorted(corpora.iterdir()) == before
        assert list(tmp_root.iterdir()) == []

    return check
