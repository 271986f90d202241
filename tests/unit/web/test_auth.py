"""Bearer tokens: hashes only, every refusal with its reason."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from citybrain.web.auth import Refused, TokenEntry, TokenRegistry, hash_token, may_see, require


@pytest.fixture(scope="module")
def tokens():
    return TokenRegistry([
        TokenEntry(id="op", role="operator", sha256=hash_token("t-op")),
        TokenEntry(id="w", role="department", department="water", sha256=hash_token("t-w")),
        TokenEntry(id="g", role="grid", grid_prefix="370306002001", sha256=hash_token("t-g")),
    ], {"water"})


@pytest.mark.parametrize("header, reason", [
    (None, "missing_token"), ("", "missing_token"), ("Basic dXNlcg==", "bad_token"), ("Bearer ", "bad_token"),
    ("Bearer t-unknown", "bad_token"), ("bearer T-OP", "bad_token"),
])
def test_refusals_are_401_with_a_reason(tokens, header, reason):
    with pytest.raises(Refused) as e:
        tokens.authenticate(header)
    assert (e.value.status, e.value.reason, e.value.field) == (401, reason, "Authorization")
    assert "t-" not in e.value.detail                       # the token is never echoed


def test_a_known_token_is_its_principal(tokens):
    p = tokens.authenticate("Bearer t-w")
    assert (p.id, p.role, p.department) == ("w", "department", "water")
    assert tokens.authenticate("bearer t-op").role == "operator"   # the scheme is case-insensitive
    assert p.actor().model_dump(exclude_none=True) == {"id": "w", "role": "department", "department": "water"}


def test_the_shipped_file_holds_hashes_only(config):
    text = config.auth_path.read_text()
    assert "demo-operator" not in text and "sha256" in text
    reg = TokenRegistry.load(config.auth_path, {d.code for d in config.taxonomy.departments})
    assert reg.authenticate("Bearer demo-operator").role == "operator"


def test_configuration_is_checked():
    with pytest.raises(ValueError, match="needs department"):
        TokenEntry(id="x", role="department", sha256="0" * 64)
    with pytest.raises(ValueError, match="unknown department"):
        TokenRegistry([TokenEntry(id="x", role="department", department="navy", sha256="0" * 64)], {"water"})
    with pytest.raises(ValueError, match="unique"):
        TokenRegistry([TokenEntry(id="x", role="operator", sha256="0" * 64)] * 2)


def test_scope(tokens):
    order = {"department": "water", "location": {"grid_code": "370306002001016"}}
    other = {"department": "fire", "location": {"grid_code": "370306005001001"}}
    op, w, g = (tokens.authenticate(f"Bearer t-{x}") for x in ("op", "w", "g"))
    assert may_see(op, other) and may_see(w, order) and not may_see(w, other)
    assert may_see(g, order) and not may_see(g, other)
    with pytest.raises(Refused) as e:
        require(g, "operator", "department")
    assert (e.value.status, e.value.reason) == (403, "forbidden_role")


@settings(max_examples=300, deadline=None)
@given(header=st.one_of(st.text(), st.builds(lambda b: "Bearer " + b.decode("utf-8", "surrogateescape"),
                                             st.binary(max_size=64))))
def test_any_header_is_a_principal_or_a_401_never_an_error(tokens, header):
    """aiohttp hands over non-UTF-8 header bytes as surrogates: still a 401, not a 500."""
    try:
        tokens.authenticate(header)
    except Refused as e:
        assert e.status == 401 and e.field == "Authorization"
        token = header.partition(" ")[2].strip()
        assert len(token) < 4 or token not in e.detail


def test_an_expired_or_revoked_token_is_refused_with_its_reason():
    from datetime import UTC, datetime, timedelta
    now = datetime.now(UTC)
    reg = TokenRegistry([
        TokenEntry(id="old", role="operator", sha256=hash_token("t-old"), expires_at=now - timedelta(seconds=1)),
        TokenEntry(id="new", role="operator", sha256=hash_token("t-new"), expires_at=now + timedelta(days=1)),
        TokenEntry(id="gone", role="operator", sha256=hash_token("t-gone")),
    ], revoked={"gone"})
    assert reg.authenticate("Bearer t-new").id == "new"
    for header, reason in (("Bearer t-old", "expired_token"), ("Bearer t-gone", "revoked_token")):
        with pytest.raises(Refused) as e:
            reg.authenticate(header)
        assert (e.value.status, e.value.reason) == (401, reason) and "t-" not in e.value.detail


def test_a_running_worker_reads_the_token_file_again_when_it_changes(tmp_path):
    """Revoking a token, or adding one, takes effect without a restart; a broken file
    keeps the tokens loaded before."""
    from citybrain.web.auth import ReloadingTokens
    path = tmp_path / "auth.toml"

    def write(revoked: list[str], extra: str = "") -> None:
        path.write_text(f"revoked = {revoked!r}\n" + "".join(
            f'[[token]]\nid = "{i}"\nrole = "operator"\nsha256 = "{hash_token("t-" + i)}"\n' for i in ("a", "b"))
            + extra)

    write([])
    tokens = ReloadingTokens(path, every=0.0)
    assert tokens.authenticate("Bearer t-a").id == "a"
    write(["a"])
    with pytest.raises(Refused) as e:
        tokens.authenticate("Bearer t-a")
    assert e.value.reason == "revoked_token" and tokens.authenticate("Bearer t-b").id == "b"
    path.write_text("this is [not toml")
    assert tokens.authenticate("Bearer t-b").id == "b"          # the last good file still holds
    write([], '[[token]]\nid = "c"\nrole = "operator"\nsha256 = "' + hash_token("t-c") + '"\n')
    assert tokens.authenticate("Bearer t-c").id == "c" and tokens.authenticate("Bearer t-a").id == "a"
