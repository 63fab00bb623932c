"""The admin credential of UpdateStock and SetStockPolicy: a bearer token (hashed in settings)
or an mTLS client.

Codes (gRPC's own definitions decide): no admin credential configured at all means nobody may
be admin, so PERMISSION_DENIED. A missing, malformed or unknown token identifies nobody, so
UNAUTHENTICATED ("the request does not have valid authentication credentials"); gRPC reserves
PERMISSION_DENIED for a caller it could identify.

With mTLS on (``tls_client_ca_file`` set) the server requires a client certificate signed by
that CA on every connection, and a verified certificate admits the admin RPCs: use a CA that
signs admin clients only. Tokens are compared as SHA-256 digests with ``hmac.compare_digest``
against every configured digest, and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from service.config import Settings
from service.domain.errors import InventoryError

AUTHORIZATION = "authorization"
_BEARER = "bearer "


class Unauthenticated(InventoryError):
    status = "UNAUTHENTICATED"


class PermissionDenied(InventoryError):
    status = "PERMISSION_DENIED"


def token_digest(token: str) -> str:
    """What ``INVENTORY_ADMIN_TOKEN_SHA256`` holds for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() != AUTHORIZATION:
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if text[: len(_BEARER)].lower() == _BEARER and text[len(_BEARER) :].strip():
            return text[len(_BEARER) :].strip()
        return None
    return None


class AdminAuth:
    def __init__(self, token_sha256: Sequence[str], *, client_certificates: bool = False) -> None:
        self._digests = tuple(d.strip().lower().encode() for d in token_sha256 if d.strip())
        self._client_certificates = client_certificates

    @classmethod
    def from_settings(cls, settings: Settings) -> AdminAuth:
        return cls(
            settings.admin_token_sha256,
            client_certificates=settings.tls_client_ca_file is not None,
        )

    @property
    def configured(self) -> bool:
        return bool(self._digests) or self._client_certificates

    def authorize(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        peer_identities: Sequence[bytes] | None = None,
    ) -> str:
        """The actor recorded in stock movements; raises when the caller is not an admin."""
        if self._client_certificates and peer_identities:
            return "cert:" + peer_identities[0].decode(errors="replace")
        if not self._digests:
            raise PermissionDenied("admin credential not configured")
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("admin RPCs need 'authorization: Bearer <token>' metadata")
        digest = token_digest(token)
        matched = False
        for expected in self._digests:  # no early exit: every digest is compared
            matched |= hmac.compare_digest(digest.encode(), expected)
        if not matched:
            raise Unauthenticated("admin token not accepted")
        return "token:" + digest[:8]
