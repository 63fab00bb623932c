"""The admin credential of UpdateStock: bearer tokens against hashed settings, mTLS peers."""

from __future__ import annotations

import pytest

from service.api.auth import (
    AdminAuth,
    PermissionDenied,
    Unauthenticated,
    bearer_token,
    token_digest,
)
from service.config import Settings

TOKEN = "s3cret-token"


def auth(*tokens: str, certs: bool = False) -> AdminAuth:
    return AdminAuth([token_digest(t) for t in tokens], client_certificates=certs)


def test_right_token_admits_and_names_the_actor_without_the_token() -> None:
    actor = auth("other", TOKEN).authorize([("authorization", f"Bearer {TOKEN}")])
    assert actor == "token:" + token_digest(TOKEN)[:8]
    assert TOKEN not in actor


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_scheme_is_case_insensitive(scheme: str) -> None:
    assert auth(TOKEN).authorize([("authorization", f"{scheme} {TOKEN}")])


def test_digests_from_settings_are_case_and_space_insensitive() -> None:
    digest = token_digest(TOKEN).upper()
    settings = Settings(admin_token_sha256=[f" {digest} "])
    assert AdminAuth.from_settings(settings).authorize([("authorization", f"Bearer {TOKEN}")])


def test_nothing_configured_is_permission_denied_whatever_is_sent() -> None:
    with pytest.raises(PermissionDenied, match="admin credential not configured"):
        auth().authorize([("authorization", f"Bearer {TOKEN}")])
    with pytest.raises(PermissionDenied):
        auth().authorize([])


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        None,
        [("x-other", "Bearer s3cret-token")],
        [("authorization", "Basic czNjcmV0")],
        [("authorization", "Bearer ")],
        [("authorization", "s3cret-token")],
    ],
)
def test_missing_or_malformed_header_is_unauthenticated(metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(Unauthenticated):
        auth(TOKEN).authorize(metadata)


def test_wrong_token_is_unauthenticated_and_the_message_does_not_echo_it() -> None:
    with pytest.raises(Unauthenticated) as caught:
        auth(TOKEN).authorize([("authorization", "Bearer guessed-token")])
    assert "guessed-token" not in str(caught.value)


def test_a_verified_client_certificate_admits_when_mtls_is_on() -> None:
    assert auth(certs=True).authorize([], [b"admin-client"]) == "cert:admin-client"


def test_a_certificate_is_ignored_when_mtls_is_off() -> None:
    with pytest.raises(Unauthenticated):
        auth(TOKEN).authorize([], [b"admin-client"])


def test_mtls_without_a_certificate_still_accepts_a_token() -> None:
    assert auth(TOKEN, certs=True).authorize([("authorization", f"Bearer {TOKEN}")], None)


def test_bearer_token_reads_bytes_values() -> None:
    assert bearer_token([("authorization", b"Bearer abc")]) == "abc"
