"""An upstream server's source URL: what it may be (`check_url`), and what it says (`UpstreamSource`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

from aimi.errors import InvalidRequest

_URL = re.compile(r"^https?://[^\s/]+")


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def check_url(source: str) -> str:
    """An upstream server's URL, optionally naming its model (`#model=ID`); never a secret, since the
    database keeps sources in the clear (the key aimi sends upstream is a setting)."""
    parts = urlsplit(source)
    if parts.username is not None or parts.password is not None:
        raise InvalidRequest(
            "The source URL carries credentials; give the upstream server's key to aimi serve as "
            "AIMI_UPSTREAM_API_KEY instead (sources are stored in the clear).",
            param="source",
        )
    if re.search(r"\s", source):
        raise InvalidRequest(f"The source URL '{source}' contains whitespace.", param="source")
    if parts.fragment and not re.fullmatch(r"model=[^&=]+", parts.fragment):
        raise InvalidRequest(
            f"The source URL's fragment '#{parts.fragment}' is not understood; '#model=ID' names the "
            "upstream server's model.",
            param="source",
        )
    return source


@dataclass(frozen=True)
class UpstreamSource:
    """Where a server is: `base` (no `/v1`, no trailing slash), the model the URL names (if any)."""

    base: str
    model: str | None = None

    @classmethod
    def parse(cls, url: str) -> UpstreamSource:
        parts = urlsplit(url)
        named = parse_qs(parts.fragment).get("model", [None])[0] if parts.fragment else None
        path = parts.path.rstrip("/")
        path = path.removesuffix("/v1")
        return cls(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), named or None)

    def url(self, path: str) -> str:
        parts = urlsplit(self.base)
        return urlunsplit((parts.scheme, parts.netloc, parts.path + path, parts.query, ""))
