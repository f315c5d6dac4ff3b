"""The clients of a Colsum service and their API tokens, kept in Redis.

Shared by the backend (which names the caller of each request by its token) and the
dispatcher (which reads a client's `weight`). Keys, under the settings' REDIS_PREFIX:

    client:<name>          hash: name, weight, created_at (and revoked_at once revoked)
    clients                set of every client's name
    token:<sha256 hex>     the name of the client the token belongs to
    client:<name>:tokens   set of that client's token hashes

A token is shown once, when issued, and only its SHA-256 is kept: whoever reads Redis
cannot call the API with what they find. Nothing is cached, so a revoked token fails on
the very next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from colsum.store import _translated
from colsum.task import ANONYMOUS, now

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")  # the spec's Client schema
ADMIN = "admin"  # the client name of the ADMIN_TOKEN's holder
# `uploads`: with CLIENT_DIRS its folder would be DATA_DIR/uploads, where everyone's go.
RESERVED = frozenset({ANONYMOUS, ADMIN, "uploads"})
TOKEN_PREFIX = "cs_"  # tells a Colsum token apart in logs, configs and secret scanners
TOKEN_BYTES = 32
DEFAULT_WEIGHT = 1


class ClientError(Exception):
    """A request about clients that cannot be done; the message says why."""


class InvalidClient(ClientError):
    pass


class ClientExists(ClientError):
    pass


class NoSuchClient(ClientError):
    pass


@dataclass(frozen=True)
class Client:
    name: str
    weight: int
    created_at: str
    revoked_at: str | None  # when its tokens were last revoked, until a new one is issued
    tokens: int  # how many valid tokens it has

    def to_json(self) -> dict[str, object]:
        return {
            "client": self.name,
            "weight": self.weight,
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
            "tokens": self.tokens,
        }


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidClient(
            f"'name': {name[:80]!r} must be 1 to 63 lowercase letters, digits, '_' or '-', "
            "starting with a letter or digit"
        )
    if name in RESERVED:
        raise InvalidClient(f"'name': {name!r} is reserved")
    return name


def check_weight(weight: object) -> int:
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise InvalidClient(f"'weight': {weight!r} must be an integer of at least 1")
    return weight


# KEYS: client hash, names set, token key, client's token set.
# ARGV: name, weight, created_at, token hash. 0 if the client exists.
_CREATE = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'weight', ARGV[2], 'created_at', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
return 1
"""

# KEYS: client hash, token key, client's token set. ARGV: name, token hash. 0 if unknown.
_ISSUE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[1], 'revoked_at')
return 1
"""

# KEYS: client hash, client's token set. ARGV: token key prefix, revoked_at.
# The number of tokens revoked, or -1 if the client is unknown.
_REVOKE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local hashes = redis.call('SMEMBERS', KEYS[2])
for _, hash in ipairs(hashes) do redis.call('DEL', ARGV[1] .. hash) end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'revoked_at', ARGV[2])
return #hashes
"""


# KEYS: token key. ARGV: prefix, token hash. The client's name, or nil.
_CLIENT_OF = """
local name = redis.call('GET', KEYS[1])
if name and redis.call('SISMEMBER', ARGV[1] .. 'client:' .. name .. ':tokens', ARGV[2]) == 1
then return name end
return nil
"""


class ClientRegistry:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        read: Callable[..., list[Any]] | None = None,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        # How `client_of` reads, on every request with a token: the task store's quick
        # reads (TaskStore.read_quickly), which on the backend's event loop give up after
        # its short timeout instead of redis-py's 10 s.
        self._read = read or (lambda *commands: [client.execute_command(*c) for c in commands])
        self._create = client.register_script(_CREATE)
        self._issue = client.register_script(_ISSUE)
        self._revoke = client.register_script(_REVOKE)

    def _client(self, name: str) -> str:
        return f"{self.prefix}client:{name}"

    def _tokens(self, name: str) -> str:
        return f"{self.prefix}client:{name}:tokens"

    def _token(self, token_hash: str) -> str:
        return f"{self.prefix}token:{token_hash}"

    @property
    def _names(self) -> str:
        return f"{self.prefix}clients"

    @_translated
    def create(self, name: str, weight: int = DEFAULT_WEIGHT) -> str:
        """Register a client and return its first token, the only time it is shown."""
        name, weight = check_name(name), check_weight(weight)
        token = new_token()
        hashed = digest(token)
        keys = [self._client(name), self._names, self._token(hashed), self._tokens(name)]
        if not self._create(keys=keys, args=[name, weight, now(), hashed]):
            raise ClientExists(f"client {name!r} exists; issue it another token instead")
        return token

    @_translated
    def issue(self, name: str) -> str:
        """Another token for a client, which works beside its others; after a revocation,
        the client's way back in."""
        token = new_token()
        hashed = digest(token)
        keys = [self._client(name), self._token(hashed), self._tokens(name)]
        if not self._issue(keys=keys, args=[name, hashed]):
            raise NoSuchClient(f"no client named {name[:80]!r}")
        return token

    @_translated
    def revoke(self, name: str) -> int:
        """Invalidate every token of a client, at once; the number revoked. The record
        stays: its tasks keep their owner, and the dispatcher its weight while they wait."""
        keys = [self._client(name), self._tokens(name)]
        revoked = self._revoke(keys=keys, args=[f"{self.prefix}token:", now()])
        if revoked < 0:
            raise NoSuchClient(f"no client named {name[:80]!r}")
        return int(revoked)

    @_translated
    def get(self, name: str) -> Client | None:
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._client(name))
            pipe.scard(self._tokens(name))
            record, tokens = pipe.execute()
        return _parse(record, tokens)

    @_translated
    def all(self) -> list[Client]:
        names = sorted(self.redis.smembers(self._names))
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._client(name))
                pipe.scard(self._tokens(name))
            replies = pipe.execute()
        pairs = zip(replies[::2], replies[1::2], strict=True)  # (record, tokens) per name
        found = (_parse(record, tokens) for record, tokens in pairs)
        return [client for client in found if client is not None]

    @_translated
    def client_of(self, token: str) -> str | None:
        """The name of the client holding `token`, or None for an unknown or revoked one.

        Looked up by the token's SHA-256, so how long the lookup takes says nothing about
        the stored hashes; the hash must be in the client's own set too, so that a token
        key left behind (a revocation by hand) never counts. One round trip: every
        request with a client's token pays it."""
        hashed = digest(token)
        (name,) = self._read(("EVAL", _CLIENT_OF, 1, self._token(hashed), self.prefix, hashed))
        return name


def _parse(record: dict[str, str], tokens: int) -> Client | None:
    if not record.get("name"):
        return None
    return Client(
        name=record["name"],
        weight=int(record.get("weight") or DEFAULT_WEIGHT),
        created_at=record.get("created_at", ""),
        revoked_at=record.get("revoked_at") or None,
        tokens=int(tokens),
    )
