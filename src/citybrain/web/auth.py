"""Bearer tokens with a role and a scope (DESIGN §7).

Tokens are configured only as SHA-256 hashes (``config/auth.toml``); a presented token
is hashed and compared with every configured hash in constant time, so neither the
token nor a timing difference gives anything away.  Tokens are never logged: refusals
log the reason and the route only.  A token may carry an expiry (``expires_at``); the
file's ``revoked`` list (token ids) refuses tokens at once; a running worker reads the file
again when it changes (``ReloadingTokens``), so neither needs a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from citybrain.domain.routing import street_desk
from citybrain.readmodels.query import Scope
from citybrain.reloading import ReloadingFile
from citybrain.wire.models import Actor

Role = Literal["operator", "department", "street", "grid", "gateway"]
log = logging.getLogger("citybrain.auth")


class TokenEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, max_length=64)
    name: str = ""
    role: Role
    department: str | None = None
    grid_prefix: str | None = Field(None, pattern=r"^\d{6,15}$")
    street_code: str | None = Field(None, pattern=r"^\d{9}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    expires_at: AwareDatetime | None = None   # refused from this moment on (expired_token)

    @model_validator(mode="after")
    def _scoped(self) -> TokenEntry:
        if self.role == "department" and not self.department:
            raise ValueError(f"token {self.id}: a department token needs department")
        if self.role == "grid" and not self.grid_prefix:
            raise ValueError(f"token {self.id}: a grid token needs grid_prefix")
        if self.role == "street" and not self.street_code:
            raise ValueError(f"token {self.id}: a street token (属地) needs street_code")
        return self


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    name: str
    role: Role
    department: str | None = None
    grid_prefix: str | None = None
    street_code: str | None = None

    @property
    def grid_scope(self) -> str:
        """A grid member's prefix (every grid token has one: ``TokenEntry`` checks it)."""
        if self.grid_prefix is None:
            raise Refused(403, "out_of_scope", "this token has no grid prefix", "Authorization")
        return self.grid_prefix

    def actor(self) -> Actor:
        return Actor(id=self.id, role=self.role, department=self.department, grid_prefix=self.grid_prefix,
                     street_code=self.street_code)

    def scope(self) -> Scope:
        """The orders it may see, as the order view filters them (the same rule as may_see)."""
        if self.role == "department":
            return Scope(department=self.department)
        if self.role == "street":
            return Scope(street_code=self.street_code, department=self.department)
        if self.role == "grid":
            return Scope(grid_prefix=self.grid_prefix or "-")
        if self.role == "operator":
            return Scope()
        return Scope(grid_prefix="-")      # no order lies in grid "-"

    def public(self) -> dict:
        return {"id": self.id, "name": self.name, "role": self.role, "department": self.department,
                "grid_prefix": self.grid_prefix, "street_code": self.street_code}


class Refused(Exception):
    def __init__(self, status: int, reason: str, detail: str, field: str | None = None,
                 retry_after: float | None = None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.field = status, reason, detail, field
        self.retry_after = retry_after   # a 429's Retry-After, seconds


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class TokenRegistry:
    def __init__(self, entries: list[TokenEntry], departments: set[str] | None = None,
                 revoked: set[str] | frozenset[str] = frozenset()):
        ids = [e.id for e in entries]
        if len(ids) != len(set(ids)):
            raise ValueError("auth: token ids must be unique")
        for e in entries:
            if departments is not None and e.department and e.department not in departments:
                raise ValueError(f"auth: token {e.id} names unknown department {e.department!r}")
        self.entries = entries
        self.revoked = frozenset(revoked)
        self._hashes = [(bytes.fromhex(e.sha256), e) for e in entries]

    @classmethod
    def load(cls, path: Path, departments: set[str] | None = None) -> TokenRegistry:
        with path.open("rb") as f:
            raw = tomllib.load(f)
        revoked = raw.get("revoked", [])
        if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
            raise ValueError("auth: revoked must be a list of token ids")
        return cls([TokenEntry.model_validate(t) for t in raw.get("token", [])], departments, set(revoked))

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Refused(401, "missing_token", "an Authorization: Bearer <token> header is required",
                          "Authorization")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Refused(401, "bad_token", "the Authorization header must be 'Bearer <token>'", "Authorization")
        try:
            digest = hashlib.sha256(token.strip().encode("utf-8")).digest()
        except UnicodeEncodeError:   # bytes that are no text (aiohttp keeps them as surrogates)
            raise Refused(401, "bad_token", "the token is not valid text", "Authorization") from None
        found = None
        for h, entry in self._hashes:        # every hash compared: constant time whatever matches
            if hmac.compare_digest(h, digest):
                found = entry
        if found is None:
            raise Refused(401, "bad_token", "unknown or revoked token", "Authorization")
        if found.id in self.revoked:
            raise Refused(401, "revoked_token", f"token {found.id} is revoked", "Authorization")
        if found.expires_at is not None and datetime.now(UTC) >= found.expires_at:
            raise Refused(401, "expired_token", f"token {found.id} expired at {found.expires_at.isoformat()}",
                          "Authorization")
        # A street desk (属地) works as the department street.<street_code>.
        department = (street_desk(found.street_code) if found.role == "street" and found.street_code
                      else found.department)
        return Principal(found.id, found.name, found.role, department, found.grid_prefix, found.street_code)


class ReloadingTokens(ReloadingFile[TokenRegistry]):
    """The token file, read again when it changes (looked at most every ``every`` seconds,
    on a request): a revocation or a new token takes effect without a restart. A file that
    no longer loads keeps the tokens last loaded, with an error in the log."""

    def __init__(self, path: Path, departments: set[str] | None = None, every: float = 1.0):
        super().__init__(path, lambda p: TokenRegistry.load(p, departments), every=every, log=log,
                         reloaded=lambda r: f"令牌文件已重新加载 token file reloaded: {len(r.entries)} tokens, "
                                            f"{len(r.revoked)} revoked",
                         refused="令牌文件无效 token file")

    def authenticate(self, header: str | None) -> Principal:
        return self.current().authenticate(header)


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Refused(403, "forbidden_role", f"role {principal.role} may not do this (allowed: {', '.join(roles)})")


def may_see(principal: Principal, snapshot: dict) -> bool:
    """An order is in scope: operators see all, departments those they lead or assist,
    a street desk (属地) every order in its street and those sent to it, grid members those
    in their grid prefix."""
    if principal.role == "operator":
        return True
    if principal.role == "department":
        return (snapshot.get("department") == principal.department
                or any(a["department"] == principal.department for a in snapshot.get("assists") or ()))
    if principal.role == "street":
        return (snapshot["location"]["street_code"] == principal.street_code
                or snapshot.get("department") == principal.department)
    if principal.role == "grid":
        return snapshot["location"]["grid_code"].startswith(principal.grid_prefix or "-")
    return False
