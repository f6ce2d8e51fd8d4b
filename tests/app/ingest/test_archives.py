import io
import stat
import tarfile
import zipfile

import numpy as np
import pytest

from app.ingest import IngestLimits
from tests.app.ingest._archives import make_tar_gz, make_zip
from tests.app.ingest._reference import jsonb, reference_corpus

MEMBERS = {
    "docs/a.txt": b"Spectral topic models from moments.\nSecond line same doc.",
    "docs/b.txt": b"Archives hold many small text files.",
    "more/c.jsonl": jsonb({"id": "x1", "text": "jsonl member text"}) + b"\n" + jsonb("another jsonl document") + b"\n",
    "more/d.csv": b"text\ncsv member row\n",
}


EXPECTED_IDS = ["docs/a.txt", "docs/b.txt", "x1", "more/c.jsonl:2", "more/d.csv:1"]
EXPECTED_TEXTS = [MEMBERS["docs/a.txt"].decode(), MEMBERS["docs/b.txt"].decode(), "jsonl member text",
                  "another jsonl document", "csv member row"]


@pytest.mark.parametrize("name, maker", [("up.zip", make_zip), ("up.tar.gz", make_tar_gz)])
def test_archive_members_become_documents(run_ingest, name, maker):
    info, corpus = run_ingest([(name, maker(MEMBERS))])
    assert corpus.doc_ids == EXPECTED_IDS
    expected, vocabulary, _ = reference_corpus(EXPECTED_TEXTS, corpus.options)
    assert corpus.vocabulary == vocabulary
    np.testing.assert_array_equal(corpus.counts.toarray(), expected)
    assert info.stats["format"] == ("zip" if name.endswith("zip") else "tar.gz")


def test_unseekable_zip_is_spooled(run_ingest, roots):
    class Unseekable(io.RawIOBase):
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            data = self._inner.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)

    from app.ingest import ingest, load_corpus
    corpora, tmp_root = roots
    ingest([("up.zip", Unseekable(make_zip(MEMBERS)))], corpora / "z", tmp_root=tmp_root)
    assert load_corpus(corpora / "z").doc_ids == EXPECTED_IDS
    assert list(tmp_root.iterdir()) == []


def test_zip_bomb_is_refused_while_streaming(assert_fails):
    bomb = make_zip({"bomb.txt": b"0" * (20 << 20)})
    assert len(bomb) < 100_000
    assert_fails([("bomb.zip", bomb)], r"bomb\.zip: members declare \d+ bytes, more than max_decompressed_bytes=1048576",
                 limits=IngestLimits(max_decompressed_bytes=1 << 20))
    assert_fails([("bomb.zip", bomb)], r"member 'bomb.txt' declares \d+ bytes, more than max_member_bytes=1048576",
                 limits=IngestLimits(max_member_bytes=1 << 20))


def test_zip_bomb_with_lying_header_is_stopped_by_counting_bytes(assert_fails):
    bomb = bytearray(make_zip({"bomb.txt": b"0" * (4 << 20)}))
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    real = (4 << 20).to_bytes(4, "little")
    assert bomb.count(real) == 2
    bomb = bytes(bomb).replace(real, (10).to_bytes(4, "little"))
    limits = IngestLimits(max_member_bytes=1 << 20, max_decompressed_bytes=1 << 20, max_document_bytes=8 << 20)
    assert_fails([("liar.zip", bomb)], r"liar\.zip!bomb\.txt: (input exceeds max_(member|decompressed)_bytes|corrupt)", limits=limits)


def test_tar_gz_bomb_is_refused(assert_fails):
    bomb = make_tar_gz({"a.txt": b"x " * (3 << 20)})
    assert_fails([("bomb.tar.gz", bomb)], r"member 'a.txt' has \d+ bytes, more than max_member_bytes=1048576",
                 limits=IngestLimits(max_member_bytes=1 << 20))
    many = make_tar_gz({f"{i}.txt": b"aa bb" for i in range(30)})
    assert_fails([("many.tar.gz", many)], r"many\.tar\.gz: input exceeds max_decompressed_bytes=4096",
                 limits=IngestLimits(max_decompressed_bytes=4096))
    assert_fails([("many.tar.gz", many)], r"more than max_archive_members=10", limits=IngestLimits(max_archive_members=10))


def test_tar_traversal_is_refused(assert_fails):
    archive = make_tar_gz({"ok.txt": b"fine words", "../../x": b"escape attempt"})
    assert_fails([("evil.tar.gz", archive)], r"evil\.tar\.gz: member '\.\./\.\./x' escapes the archive")
    absolute = make_tar_gz({"/etc/passwd.txt": b"root words"})
    assert_fails([("abs.tar.gz", absolute)], r"has an absolute path")


def test_zip_traversal_and_absolute_names_are_refused(assert_fails):
    assert_fails([("evil.zip", make_zip({"a/../../x.txt": b"words"}))], r"escapes the archive")
    assert_fails([("evil.zip", make_zip({"C:/x.txt": b"words"}))], r"absolute path")


def test_links_and_special_members_are_refused(assert_fails):
    link = tarfile.TarInfo("link.txt")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    assert_fails([("l.tar.gz", make_tar_gz({"a.txt": b"words"}, [link]))], r"member 'link.txt' is a link")
    hard = tarfile.TarInfo("hard.txt")
    hard.type, hard.linkname = tarfile.LNKTYPE, "a.txt"
    assert_fails([("h.tar.gz", make_tar_gz({"a.txt": b"words"}, [hard]))], r"member 'hard.txt' is a link")
    fifo = tarfile.TarInfo("pipe.txt")
    fifo.type = tarfile.FIFOTYPE
    assert_fails([("f.tar.gz", make_tar_gz({"a.txt": b"words"}, [fifo]))], r"is a special file")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link.txt")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    assert_fails([("l.zip", buffer.getvalue())], r"member 'link.txt' is a symbolic link")


def test_nested_archives_are_refused(assert_fails):
    inner = make_zip({"a.txt": b"words"})
    assert_fails([("n.zip", make_zip({"inner.zip": inner}))], r"nested archive 'inner.zip' refused")
    assert_fails([("n.tar.gz", make_tar_gz({"inner.tar.gz": make_tar_gz({"a.txt": b"w"})}))], r"nested archive")
    # Disguised by name: magic bytes give it away.
    assert_fails([("n.zip", make_zip({"inner.txt": inner}))], r"member 'inner.txt' is an archive or compressed file")


def test_unsupported_members_and_corrupt_archives(assert_fails):
    assert_fails([("u.zip", make_zip({"a.docx": b"words"}))], r"u\.zip!a\.docx: unsupported member type '\.docx'")
    assert_fails([("c.zip", b"PK\x03\x04garbage")], r"c\.zip: not a readable zip archive")
    assert_fails([("c.tar.gz", b"\x1f\x8b\x08\x00garbage")], r"c\.tar\.gz: (corrupt|not a readable)")
    good = make_tar_gz(MEMBERS)
    assert_fails([("t.tar.gz", good[: len(good) // 2])], r"t\.tar\.gz.*(corrupt|not a readable|unexpected end)")
    assert_fails([("bad.zip", make_zip({"a.txt": b"ok \xff\xfe"}))], r"bad\.zip!a\.txt: invalid UTF-8")


def test_macos_metadata_is_skipped(run_ingest):
    _, corpus = run_ingest([("m.zip", make_zip({"__MACOSX/._a.txt": b"\x00\x05", "a.txt": b"real words", ".DS_Store": b"\x00"}))])
    assert corpus.doc_ids == ["a.txt"]


def test_oversized_archives_are_refused(assert_fails):
    many = make_zip({f"{i}.txt": b"aa bb" for i in range(30)})
    assert_fails([("many.zip", many)], r"many\.zip: 30 members, more than max_archive_members=10",
                 limits=IngestLimits(max_archive_members=10))
    assert_fails([("big.zip", make_zip(MEMBERS))], r"big\.zip: input exceeds max_total_bytes=200",
                 limits=IngestLimits(max_total_bytes=200))
    assert_fails([("big.tar.gz", make_tar_gz(MEMBERS))], r"big\.tar\.gz: input exceeds max_total_bytes=100",
                 limits=IngestLimits(max_total_bytes=100))
    assert_fails([("doc.zip", make_zip({"a.txt": b"word " * 100}))], r"doc\.zip!a\.txt: document longer than max_document_bytes=50",
                 limits=IngestLimits(max_document_bytes=50))


def test_nested_archive_magic_detection_spares_ordinary_text(run_ingest, assert_fails):
    import bz2
    assert_fails([("n.zip", make_zip({"x.txt": bz2.compress(b"words")}))], r"is an archive or compressed file")
    _, corpus = run_ingest([("ok.zip", make_zip({"a.txt": b"BZh words about bzip2 ustar and Rar! archives"}))])
    assert "bzh" in corpus.vocabulary
