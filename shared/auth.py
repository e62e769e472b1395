"""API tokens: who a bearer token names, read from FILTERVIZ_API_TOKENS_FILE.

The file holds one token a line, `<name> <scope> <sha256 hex of the token>`, scope `user` or
`admin`; blank lines and lines starting with `#` are skipped. Only hashes are stored, so the file
gives nothing away, and a presented token is hashed and compared with every entry in constant time
(hmac.compare_digest), so the time taken says nothing about how close a guess came.
"""

import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

USER, ADMIN = "user", "admin"
SCOPES = frozenset({USER, ADMIN})
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class TokenFileError(ValueError):
    """The tokens file can't be read, or a line of it is malformed (the message names the line)."""


@dataclass(frozen=True)
class Caller:
    """Whose token came with a request: its name and whether it may see every job."""

    name: str
    admin: bool


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
        for number, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            problem = _problem(fields, names)
            if problem:
                raise TokenFileError(f"{source} line {number}: {problem} (want `<name> <user|admin> <sha256 hex>`)")
            name, scope, digest = fields
            names.add(name)
            entries.append(_Entry(Caller(name, scope == ADMIN), bytes.fromhex(digest)))
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


def _problem(fields: list[str], names: set[str]) -> str | None:
    if len(fields) != 3:
        return f"{len(fields)} fields"
    name, scope, digest = fields
    if not _NAME.match(name):
        return f"name {name[:64]!r} is not 1-64 letters, digits or ._@-"
    if name in names:
        return f"name {name!r} appears twice"
    if scope not in SCOPES:
        return f"scope {scope[:20]!r} is neither user nor admin"
    if not _SHA256.match(digest):
        return "the hash is not 64 lowercase hex digits (sha256)"
    return None


def main(argv: list[str]) -> int:
    """`python -m shared.auth NAME [user|admin]`: a new random token, and its line for the tokens file."""
    if len(argv) not in (1, 2) or (len(argv) == 2 and argv[1] not in SCOPES) or not _NAME.match(argv[0]):
        print("usage: python -m shared.auth NAME [user|admin]", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    scope = argv[1] if len(argv) == 2 else USER
    print(f"token (give it to {argv[0]}; it is not stored anywhere): {token}")
    print(f"line for FILTERVIZ_API_TOKENS_FILE: {argv[0]} {scope} {token_digest(token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
