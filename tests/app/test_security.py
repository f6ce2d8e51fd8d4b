"""API keys: hashing, token parsing, verification, revocation, the loopback rule and the CLI."""
from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.cli import main
from app.client import ApiClient
from app.core.db import transaction
from app.core.ids import new_id
from app.core.security import (
    check_bind,
    create_api_key,
    hash_secret,
    is_loopback,
    list_api_keys,
    parse_token,
    revoke_api_key,
    verify_token,
)
from app.core.tables import ApiKeyRow
from gpu.errors import InvalidInput


def test_hash_is_hmac_sha256_of_the_secret_keyed_by_the_salt():
    expected = hmac.new(b"salt-1", b"secret", hashlib.sha256).hexdigest()
    assert hash_secret("salt-1", "secret") == expected
    assert hash_secret("salt-2", "secret") != expected  # the salt matters
    assert hash_secret("salt-1", "secreT") != expected


def test_keys_are_random_and_only_a_hash_is_stored(ctx):
    with transaction(ctx.sessions) as session:
        first = create_api_key(session, "tenant-a")
        second = create_api_key(session, "tenant-a")
    assert first.token != second.token and first.key_id != second.key_id
    key_id, secret = parse_token(first.token)
    assert key_id == first.key_id and len(secret) == 43  # 256 random bits, url-safe base64
    with ctx.sessions() as session:
        row = session.get(ApiKeyRow, first.key_id)
        table = ApiKeyRow.__table__
        stored = [str(v) for v in session.execute(sa.select(table).where(table.c.id == first.key_id)).one()]
    assert row.tenant_id == "tenant-a" and row.revoked_at is None
    assert row.secret_hash == hash_secret(row.salt, secret)
    assert not any(secret in value for value in stored)  # the secret itself is nowhere in the row


def test_verify_accepts_only_the_exact_unrevoked_token(ctx):
    with transaction(ctx.sessions) as session:
        key = create_api_key(session, "tenant-a")
    key_id, secret = parse_token(key.token)
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with ctx.sessions() as session:
        assert verify_token(session, key.token) == "tenant-a"
        assert verify_token(session, f"st_{key_id}_{tampered}") is None
        assert verify_token(session, f"st_{'0' * 16}_{secret}") is None  # unknown id
        for malformed in ("", "st_", key.token + "x", key.token.upper(), "Bearer " + key.token):
            assert verify_token(session, malformed) is None
    with transaction(ctx.sessions) as session:
        revoked = revoke_api_key(session, key_id)
        assert revoked.revoked_at is not None
        again = revoke_api_key(session, key_id).revoked_at  # idempotent
        assert again == revoked.revoked_at
    with ctx.sessions() as session:
        assert verify_token(session, key.token) is None
        with pytest.raises(InvalidInput, match="does not exist"):
            revoke_api_key(session, "f" * 16)


def test_tenant_names_are_checked(ctx):
    with ctx.sessions() as session:
        for bad in ("", " a", "a/b", "x" * 65):
            with pytest.raises(InvalidInput, match="tenant"):
                create_api_key(session, bad)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.1.2.3", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.5", False), ("example.com", False)])
def test_open_mode_only_on_loopback(host, loopback):
    assert is_loopback(host) is loopback
    assert check_bind(host, require_api_keys=True) is None
    if loopback:
        assert "OPEN" in check_bind(host, require_api_keys=False)
    else:
        with pytest.raises(InvalidInput, match="REQUIRE_API_KEYS"):
            check_bind(host, require_api_keys=False)


@pytest.mark.parametrize("command", ["serve", "api"])
def test_cli_refuses_an_open_api_on_a_public_address(command, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("REQUIRE_API_KEYS", raising=False)
    assert main([command, "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    assert "REQUIRE_API_KEYS" in capsys.readouterr().err
    assert not (tmp_path / "spectral-topics.db").exists()  # refused before anything started


def test_cli_keys_create_list_revoke(tmp_path, monkeypatch, capsys):
    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    data = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--tenant", "acme", *data]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    key_id, _ = parse_token(token)
    assert "shown only once" in out.err
    assert main(["keys", "list", *data]) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "acme" in listing and token not in listing
    assert main(["keys", "revoke", key_id, *data]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "0" * 16, *data]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["keys", "create", "--tenant", "bad/name", *data]) == 1
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'spectral-topics.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select id, tenant_id, revoked_at from api_keys")).all()
    engine.dispose()
    assert len(rows) == 1 and rows[0][0] == key_id and rows[0][2] is not None


def test_list_filters_by_tenant(ctx):
    one, two = f"one-{new_id()[:8]}", f"two-{new_id()[:8]}"  # the PostgreSQL schema is shared by tests
    with transaction(ctx.sessions) as session:
        created = {create_api_key(session, one).key_id, create_api_key(session, two).key_id}
    with ctx.sessions() as session:
        assert [r.tenant_id for r in list_api_keys(session, two)] == [two]
        assert created <= {r.id for r in list_api_keys(session)}


def test_client_sends_the_key_as_a_bearer_token():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"id": "j", "state": "queued"})

    ApiClient("http://api", transport=httpx.MockTransport(handler), api_key="st_key").job("j")
    ApiClient("http://api", transport=httpx.MockTransport(handler)).job("j")
    assert seen == ["Bearer st_key", None]


def test_cli_reads_the_key_from_the_environment(monkeypatch):
    from app.cli import _parser

    monkeypatch.setenv("SPECTRAL_TOPICS_API_KEY", "st_from_env")
    assert _parser().parse_args(["job", "x"]).api_key == "st_from_env"
    assert _parser().parse_args(["job", "x", "--api-key", "st_flag"]).api_key == "st_flag"


def test_cli_says_when_the_api_is_open(capsys):
    from app.cli import _check_bind
    from app.core.settings import Settings

    assert _check_bind(Settings(require_api_keys=False), "127.0.0.1") is True
    assert "OPEN" in capsys.readouterr().err
    assert _check_bind(Settings(require_api_keys=True), "0.0.0.0") is True
    assert capsys.readouterr().err == ""


def test_migration_0002_upgrades_and_downgrades(tmp_path):
    from app.migrations import downgrade_database, upgrade_database

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_database(engine, "0001")
    assert "api_keys" not in sa.inspect(engine).get_table_names()
    upgrade_database(engine)
    columns = {c["name"] for c in sa.inspect(engine).get_columns("api_keys")}
    assert columns == {"id", "tenant_id", "salt", "secret_hash", "created_at", "revoked_at"}
    downgrade_database(engine, "0001")
    assert "api_keys" not in sa.inspect(engine).get_table_names()
    engine.dispose()

_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parse_token_never_raises_and_accepts_only_the_exact_shape(text):
    parsed = parse_token(text)
    if parsed is not None:
        key_id, secret = parsed
        assert text == f"st_{key_id}_{secret}" and len(key_id) == 16 and len(secret) == 43


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.text("0123456789abcdef", min_size=16, max_size=16), st.text(_SECRET_ALPHABET, min_size=43, max_size=43),
       st.text(max_size=3))
def test_parse_token_round_trips_and_rejects_any_suffix(key_id, secret, suffix):
    assert parse_token(f"st_{key_id}_{secret}") == (key_id, secret)
    if suffix:
        assert parse_token(f"st_{key_id}_{secret}{suffix}") is None
        assert parse_token(f"{suffix}st_{key_id}_{secret}") is None
