"""Refuse requests whose Host header is not this server's own: DNS rebinding.

In a DNS rebinding attack a page from attacker.example makes its name resolve to
127.0.0.1, and the victim's browser then sends that page's requests to the local
server with `Host: attacker.example:PORT` (Jackson et al., "Protecting Browsers from
DNS Rebinding Attacks", ACM CCS 2007, Section 4.1, which recommends exactly this check).
So a request is answered only when its Host names the address the server is bound to,
or a loopback name (localhost, 127.0.0.1, [::1]), or a name given with --allow-host,
with the bound port (no port only for port 80). Bound to every interface (0.0.0.0 or
::), a Host that is an IP address is accepted too: an attacker's page cannot send one,
since its requests carry the attacker's name. Others get 421 Misdirected Request, a
request without Host 400, each with {"error": ...}.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def split_host(value: str) -> tuple[str, int | None]:
    """'name:8000' -> ('name', 8000); '[::1]:8000' -> ('::1', 8000); no port -> None.

    A port that is not a number gives -1, which matches no server.
    """
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, None
    if port is None:
        return name, None
    return name, int(port) if port.isascii() and port.isdigit() else -1


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: HTTP requests pass only with an accepted Host header."""

    def __init__(self, app: ASGIApp, host: str, port: int, allow: Iterable[str] = ()) -> None:
        self.app = app
        self.port = port
        self.names = {n.lower().strip("[]") for n in (*LOOPBACK_NAMES, host, *allow)}
        self.any_ip = host in WILDCARDS

    def accepts(self, value: str) -> bool:
        name, port = split_host(value)
        if (port if port is not None else 80) != self.port:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hosts = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
            if len(hosts) != 1:
                error, status = f"{len(hosts)} Host headers: expected exactly one", 400
            elif not self.accepts(hosts[0]):
                error = f"Host {hosts[0]!r} is not this server's (port {self.port}): refused"
                status = 421
            else:
                error = ""
            if error:
                await JSONResponse({"error": error}, status_code=status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
