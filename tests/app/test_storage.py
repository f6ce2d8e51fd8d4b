import pytest

from app.artifacts.artifact_files import (
    ArtifactCorrupt,
    DataLayout,
    atomic_directory,
    directory_checksum,
    verify_checksum,
    write_bytes_atomic,
)
from gpu.errors import InvalidInput


def test_atomic_directory_publishes_only_on_success(tmp_path):
    layout = DataLayout(tmp_path).ensure()
    final = layout.corpus_dir("c1")
    with atomic_directory(final, layout.tmp) as tmp:
        (tmp / "a.txt").write_text("hello")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "hello"
    assert list(layout.tmp.iterdir()) == []


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    layout = DataLayout(tmp_path).ensure()
    final = layout.model_dir("m1")
    with pytest.raises(RuntimeError):
        with atomic_directory(final, layout.tmp) as tmp:
            (tmp / "half.bin").write_bytes(b"x" * 10)
            raise RuntimeError("crash mid-write")
    assert not final.exists()
    assert list(layout.tmp.iterdir()) == []


def test_artifacts_are_immutable(tmp_path):
    layout = DataLayout(tmp_path).ensure()
    final = layout.corpus_dir("c2")
    with atomic_directory(final, layout.tmp) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError):
        with atomic_directory(final, layout.tmp) as tmp:
            (tmp / "a").write_text("2")
    assert (final / "a").read_text() == "1"


def test_checksum_detects_changes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"abc")
    digest = directory_checksum(tmp_path / "d")
    verify_checksum(tmp_path / "d", digest)
    (tmp_path / "d" / "x").write_bytes(b"abd")
    with pytest.raises(ArtifactCorrupt, match="corrupt"):
        verify_checksum(tmp_path / "d", digest)
    with pytest.raises(ArtifactCorrupt, match="missing"):
        verify_checksum(tmp_path / "nope", digest)


def test_ids_with_path_tricks_are_rejected(tmp_path):
    layout = DataLayout(tmp_path)
    for bad in ["../x", "a/b", "", "."]:
        with pytest.raises(InvalidInput):
            layout.corpus_dir(bad)


def test_write_bytes_atomic_replaces(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]
