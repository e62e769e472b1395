"""API tokens: who a bearer token names, read from FILTERVIZ_API_TOKENS_FILE.

The file holds one token a line, `<name> <scope> <sha256 hex of the token>`, scope `user`, `admin`
or `metrics` (reads /metrics and nothing else: for Prometheus and an autoscaler); blank lines and
lines starting with `#` are skipped. A hash may appear once: the same token under two names would
make the later line win, silently. Only hashes are stored, so the file
gives nothing away, and a presented token is hashed and compared with every entry in constant time
(hmac.compare_digest), so the time taken says nothing about how close a guess came.
"""

import hashlib
import hmac
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

USER, ADMIN, METRICS = "user", "admin", "metrics"
SCOPES = frozenset({USER, ADMIN, METRICS})
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TokenFileError(ValueError):
    """The tokens file can't be read, or a line of it is malformed (the message names the line)."""


@dataclass(frozen=True)
class Caller:
    """Whose token came with a request: its name and scope."""

    name: str
    scope: str

    @property
    def admin(self) -> bool:
        """May see and manage every job, and read the metrics."""
        return self.scope == ADMIN

    @property
    def reads_metrics(self) -> bool:
        """May read /metrics and /metrics/backlog."""
        return self.scope in (ADMIN, METRICS)


@dataclass(frozen=True)
class _Entry:
    caller: Caller
    digest: bytes


def token_digest(token: str) -> str:
    """The sha256 hex of a token, as the tokens file holds it (`printf %s TOKEN | sha256sum` gives the same)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The configured tokens; `who(token)` names the caller a bearer token belongs to."""

    def __init__(self, entries: list[_Entry]) -> None:
        self._entries = entries

    @classmethod
    def parse(cls, text: str, source: str = "tokens file") -> "Tokens":
        """Tokens from the file's text; TokenFileError naming the first bad line."""
        entries: list[_Entry] = []
        names: set[str] = set()
        digests: set[str] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            problem = _problem(fields, names, digests)
            if problem:
                raise TokenFileError(
                    f"{source} line {number}: {problem} (want `<name> <user|admin|metrics> <sha256 hex>`)"
                )
            name, scope, digest = fields
            names.add(name)
            digests.add(digest)
            entries.append(_Entry(Caller(name, scope), bytes.fromhex(digest)))
        if not entries:
            raise TokenFileError(f"{source} names no token: no API call could be made")
        return cls(entries)

    @classmethod
    def load(cls, path: str) -> "Tokens":
        """Tokens from the file at path."""
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise TokenFileError(f"FILTERVIZ_API_TOKENS_FILE {path}: {error.strerror or error}") from None
        return cls.parse(text, path)

    def who(self, token: str) -> Caller | None:
        """The caller whose token this is, or None. Every entry is compared, in constant time."""
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry.caller
        return found


def _problem(fields: list[str], names: set[str], digests: set[str]) -> str | None:
    if len(fields) != 3:
        return f"{len(fields)} fields"
    name, scope, digest = fields
    if not _NAME.match(name):
        return f"name {name[:64]!r} is not 1-64 letters, digits or ._@-"
    if name in names:
        return f"name {name!r} appears twice"
    if scope not in SCOPES:
        return f"scope {scope[:20]!r} is not user, admin or metrics"
    if not _SHA256.match(digest):
        return "the hash is not 64 lowercase hex digits (sha256)"
    if digest in digests:
        return "this hash is on an earlier line too: one token would be two callers"
    return None


def load_tokens(path: str | None, allow_open: bool, environ: Mapping[str, str]) -> Tokens | None:
    """The API's tokens from the file at `path`; None (an open API) when there is no file, except in
    Kubernetes (KUBERNETES_SERVICE_HOST set), where any pod could then list and delete every job:
    there the start is refused unless the operator opted out (`allow_open`, FILTERVIZ_ALLOW_NO_TOKENS)."""
    if path:
        return Tokens.load(path)
    if environ.get("KUBERNETES_SERVICE_HOST") and not allow_open:
        raise TokenFileError(
            "the API refuses to start: it runs in Kubernetes without tokens, so anything that reaches it could "
            "read, cancel and delete every job: set FILTERVIZ_API_TOKENS_FILE (deploy/k8s mounts it from the "
            "Secret filterviz-api-tokens), or FILTERVIZ_ALLOW_NO_TOKENS=1 to run it open on purpose"
        )
    return None


def main(argv: list[str]) -> int:
    """`python -m api.auth NAME [user|admin|metrics]`: a new random token, and its line for the tokens file."""
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in SCOPES) or not _NAME.match(argv[0]):
        print("usage: python -m api.auth NAME [user|admin|metrics]", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    scope = argv[1] if len(argv) == 2 else USER
    print(f"token (give it to {argv[0]}; it is not stored anywhere): {token}")
    print(f"line for FILTERVIZ_API_TOKENS_FILE: {argv[0]} {scope} {token_digest(token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
