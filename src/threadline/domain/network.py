"""Which network destinations Threadline may reach, the pure part: a URL's syntax, whether an address is
public, and what a Retry-After header asks. Shared by outgoing webhooks and the channel settings check;
``threadline/net.py`` resolves names and connects.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

MAX_URL = 2000


# --- destinations --------------------------------------------------------------------------------------

def url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL as written (None: nothing). Addresses are checked separately."""
    if not url or len(url) > MAX_URL:
        return f"a webhook URL is 1-{MAX_URL} characters"
    if any(c.isspace() for c in url):
        return "a webhook URL has no spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "the webhook URL is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "a webhook URL starts with https:// or http://"
    if not parts.hostname:
        return "the webhook URL has no host"
    if parts.fragment:
        return "a webhook URL has no #fragment"
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_is_public(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade NAT,
    unspecified, multicast, documentation and reserved addresses, also when wrapped in IPv6."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    return ip.is_global and not ip.is_multicast


def host_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
