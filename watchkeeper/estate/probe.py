"""Ask a device what it is, read-only, within a hard time limit and a size cap.

Every question is a read: ONVIF ``Get*`` operations (GetCapabilities, GetServices,
GetDeviceInformation, GetNetworkInterfaces, and the media service's
GetVideoAnalyticsConfigurations for the analytics modules and rules it offers), an
HTTP ``GET /`` for the ``Server`` header and the login page's title, an RTSP
``OPTIONS`` for the server banner, a TLS handshake for the certificate's subject, TCP
connections to see which ports are open, and with credentials the user gave, the
vendor's documented read of its cloud/P2P setting. No ``Set*`` operation, no ``PUT``,
no login attempt without given credentials, ever.

ONVIF is spoken as plain SOAP 1.2 over httpx with the request bodies of the ONVIF
Core and Media specifications, not through zeep: zeep would need the ONVIF WSDLs
(which must not be fetched at run time) and reads whole answers into memory, while
this module caps every answer (``Limits.max_body``) and bounds every call's total
time (``Limits.timeout``) with ``asyncio.wait_for``, whatever the device does. XML
is parsed with defusedxml (no entity expansion); an answer that is not XML is a
problem on record, never an exception out of :func:`probe_device`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import html
import os
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXML
import httpx
from cryptography import x509

DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "rtsp": 554,
    "onvif": 80,
    "telnet": 23,
    "hikvision-sdk": 8000,
    "dahua-sdk": 37777,
    "http-alt": 8080,
}
"""Where each service is looked for when discovery or the asset list did not say."""

USER_AGENT = "Watchkeeper-estate-audit (read-only)"


@dataclass(frozen=True)
class Limits:
    timeout: float = 5.0
    """Most seconds one question may take, from connecting to the last byte."""
    max_body: int = 256 * 1024
    """Most bytes read of one answer; the rest is never read."""


@dataclass(frozen=True)
class Credentials:
    """A user name and password the user gave for a device or a site (never stored)."""

    username: str
    password: str


@dataclass
class ProbeResult:
    answered: bool
    seconds: float
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Oversized(Exception):
    """An answer longer than the cap."""


class Unreadable(Exception):
    """An answer that is not what the protocol says it should be."""


class Declined(Exception):
    """A well-formed refusal (a SOAP fault, such as "not authorised")."""


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def first_text(root: Element, name: str) -> str | None:
    for element in root.iter():
        if local(element.tag) == name and element.text and element.text.strip():
            return element.text.strip()
    return None


def parse_xml(body: bytes) -> Element:
    try:
        return SafeXML.fromstring(body)
    except Exception as exc:  # defusedxml raises several kinds; all mean "not usable XML"
        raise Unreadable(f"malformed XML ({type(exc).__name__}: {str(exc)[:120]})") from None


async def read_capped(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise Oversized(f"answer larger than {limit} bytes; the rest was not read")
    return bytes(body)


# ONVIF


SOAP_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope">'
    "<s:Header>{security}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
)
DEVICE_NS = "http://www.onvif.org/ver10/device/wsdl"
MEDIA_NS = "http://www.onvif.org/ver10/media/wsdl"
READ_OPERATIONS = {
    "GetCapabilities": (DEVICE_NS, "<Category>All</Category>"),
    "GetServices": (DEVICE_NS, "<IncludeCapability>false</IncludeCapability>"),
    "GetDeviceInformation": (DEVICE_NS, ""),
    "GetNetworkInterfaces": (DEVICE_NS, ""),
    "GetVideoAnalyticsConfigurations": (MEDIA_NS, ""),
}
"""The only ONVIF operations this module sends, with their bodies' content."""


def soap_request(operation: str, credentials: Credentials | None) -> bytes:
    namespace, content = READ_OPERATIONS[operation]
    body = f'<{operation} xmlns="{namespace}">{content}</{operation}>'
    return SOAP_ENVELOPE.format(security=username_token(credentials), body=body).encode()


def username_token(credentials: Credentials | None) -> str:
    """A WS-Security UsernameToken with a password digest (ONVIF Core 5.12), or nothing."""
    if credentials is None:
        return ""
    nonce = os.urandom(16)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    digest = hashlib.sha1(nonce + created.encode() + credentials.password.encode()).digest()
    wsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
    wsu = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
    profile = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    return (
        f'<Security xmlns="{wsse}" s:mustUnderstand="1"><UsernameToken>'
        f"<Username>{html.escape(credentials.username)}</Username>"
        f'<Password Type="{profile}#PasswordDigest">{base64.b64encode(digest).decode()}</Password>'
        f'<Nonce EncodingType="{profile}#Base64Binary">{base64.b64encode(nonce).decode()}</Nonce>'
        f'<Created xmlns="{wsu}">{created}</Created></UsernameToken></Security>'
    )


class Prober:
    """One device's probe: a shared HTTP client, the limits, and what was learnt."""

    def __init__(
        self,
        address: str,
        ports: dict[str, int],
        credentials: Credentials | None,
        limits: Limits,
        defaults: dict[str, int],
    ) -> None:
        self.address = address
        self.ports = {**defaults, **ports}
        self.ports["onvif"] = ports.get("onvif") or ports.get("onvif-alt") or self.ports["http"]
        self.credentials = credentials
        self.limits = limits
        self.facts: dict[str, Any] = {}
        self.problems: list[str] = []
        self.answered = False
        self.timed_out = False
        self.client = httpx.AsyncClient(
            verify=False,  # a camera's self-signed certificate is read, not trusted
            follow_redirects=False,
            timeout=limits.timeout,
            headers={"User-Agent": USER_AGENT},
        )

    def host(self) -> str:
        return f"[{self.address}]" if ":" in self.address else self.address

    async def bounded(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` within the time limit; a time-out, an oversized or malformed
        answer or a refused connection is a problem on record and None."""
        try:
            return await asyncio.wait_for(call(), self.limits.timeout)
        except TimeoutError:
            self.timed_out = True
            self.problems.append(f"{what}: no complete answer within {self.limits.timeout:g} s")
        except (Oversized, Unreadable) as exc:
            self.answered = True
            self.problems.append(f"{what}: {exc}")
            self.facts.setdefault("violations", []).append(f"{what}: {exc}")
        except Declined as exc:
            self.answered = True
            self.problems.append(f"{what}: {exc}")
        except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
            self.problems.append(f"{what}: {type(exc).__name__} {str(exc)[:120]}".rstrip())
        return None

    async def get(self, url: str, auth: httpx.Auth | None = None) -> tuple[httpx.Response, bytes]:
        async with self.client.stream("GET", url, auth=auth) as response:
            return response, await read_capped(response, self.limits.max_body)

    async def soap(self, url: str, operation: str) -> Element:
        namespace, _ = READ_OPERATIONS[operation]
        headers = {
            "Content-Type": f'application/soap+xml; charset=utf-8; action="{namespace}/{operation}"'
        }
        request = soap_request(operation, self.credentials)
        async with self.client.stream("POST", url, content=request, headers=headers) as response:
            body = await read_capped(response, self.limits.max_body)
        self.answered = True
        root = parse_xml(body)
        if local(root.tag) != "Envelope":
            raise Unreadable(f"answer is XML but not a SOAP envelope ({local(root.tag)})")
        fault = next((e for e in root.iter() if local(e.tag) == "Fault"), None)
        if fault is not None:
            reason = first_text(fault, "Text") or first_text(fault, "Value") or "fault"
            raise Declined(f"SOAP fault: {reason}")
        return root

    # The questions

    async def open_ports(self) -> None:
        async def is_open(port: int) -> bool:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.address, port), self.limits.timeout
                )
            except (TimeoutError, OSError):
                return False
            writer.close()
            return True

        services = list(self.ports.items())
        states = await asyncio.gather(*(is_open(port) for _, port in services))
        self.facts["open_ports"] = {
            name: port for (name, port), up in zip(services, states, strict=True) if up
        }

    async def onvif(self) -> None:
        if "onvif" not in self.facts["open_ports"]:
            return
        url = f"http://{self.host()}:{self.ports['onvif']}/onvif/device_service"
        found: dict[str, Any] = {}
        capabilities = await self.bounded(
            "ONVIF GetCapabilities", lambda: self.soap(url, "GetCapabilities")
        )
        if capabilities is None and self.timed_out:
            return  # it let the first question time out: asking more only costs time
        media_url = None
        if capabilities is not None:
            for element in capabilities.iter():
                if local(element.tag) == "Media":
                    media_url = first_text(element, "XAddr")
        services = await self.bounded("ONVIF GetServices", lambda: self.soap(url, "GetServices"))
        if services is not None:
            found["services"] = sorted(
                {e.text.strip() for e in services.iter() if local(e.tag) == "Namespace" and e.text}
            )
        info = await self.bounded(
            "ONVIF GetDeviceInformation", lambda: self.soap(url, "GetDeviceInformation")
        )
        if info is not None:
            for field_name, tag in (
                ("manufacturer", "Manufacturer"),
                ("model", "Model"),
                ("firmware", "FirmwareVersion"),
                ("serial", "SerialNumber"),
                ("hardware", "HardwareId"),
            ):
                found[field_name] = first_text(info, tag)
        interfaces = await self.bounded(
            "ONVIF GetNetworkInterfaces", lambda: self.soap(url, "GetNetworkInterfaces")
        )
        if interfaces is not None:
            mac = first_text(interfaces, "HwAddress")
            if mac:
                self.facts["mac"] = mac.upper().replace("-", ":")
        if media_url:
            # The XAddr names the device's own address; ask the address we reach it on.
            path = httpx.URL(media_url).path or "/onvif/media_service"
            media = f"http://{self.host()}:{self.ports['onvif']}{path}"
            analytics = await self.bounded(
                "ONVIF GetVideoAnalyticsConfigurations",
                lambda: self.soap(media, "GetVideoAnalyticsConfigurations"),
            )
            if analytics is not None:
                found["analytics"] = sorted(
                    {
                        " ".join(filter(None, (e.get("Name"), e.get("Type"))))
                        for e in analytics.iter()
                        if local(e.tag) in ("AnalyticsModule", "Rule")
                    }
                )
        if found:
            self.facts["onvif"] = found

    async def web(self, scheme: str) -> None:
        if scheme not in self.facts["open_ports"]:
            return
        url = f"{scheme}://{self.host()}:{self.ports[scheme]}/"
        got = await self.bounded(f"{scheme.upper()} GET /", lambda: self.get(url))
        if got is None:
            return
        response, body = got
        self.answered = True
        title = re.search(rb"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
        self.facts[scheme] = {
            "status": response.status_code,
            "server": response.headers.get("server"),
            "title": html.unescape(title.group(1).decode("utf-8", "replace").strip())
            if title
            else None,
            "location": response.headers.get("location"),
        }

    async def certificate(self) -> None:
        if "https" not in self.facts["open_ports"]:
            return

        async def handshake() -> dict[str, str]:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # read the subject; trust is not the question
            _, writer = await asyncio.open_connection(
                self.address, self.ports["https"], ssl=context
            )
            try:
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            finally:
                writer.close()
            cert = x509.load_der_x509_certificate(der)
            return {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "not_after": cert.not_valid_after_utc.isoformat(),
            }

        found = await self.bounded("TLS certificate", handshake)
        if found is not None:
            self.facts["certificate"] = found

    async def rtsp(self) -> None:
        if "rtsp" not in self.facts["open_ports"]:
            return

        async def options() -> dict[str, Any]:
            reader, writer = await asyncio.open_connection(self.address, self.ports["rtsp"])
            try:
                target = f"rtsp://{self.host()}:{self.ports['rtsp']}/"
                writer.write(
                    f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\n"
                    f"User-Agent: {USER_AGENT}\r\n\r\n".encode()
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise Oversized("RTSP answer head longer than 64 KiB") from None
            except asyncio.IncompleteReadError as exc:
                raise Unreadable(f"RTSP answer ended early ({len(exc.partial)} bytes)") from None
            finally:
                writer.close()
            lines = head.decode("latin-1").split("\r\n")
            if not lines[0].startswith("RTSP/"):
                raise Unreadable(f"not an RTSP answer: {lines[0][:80]!r}")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:])
                if k
            }
            return {
                "status": lines[0],
                "server": headers.get("server"),
                "public": headers.get("public"),
            }

        found = await self.bounded("RTSP OPTIONS", options)
        if found is not None:
            self.answered = True
            self.facts["rtsp"] = found

    async def cloud(self, maker: str | None) -> None:
        """The cloud/P2P setting, read with the user's credentials where the maker
        documents a read for it (Hikvision ISAPI, Dahua HTTP API)."""
        if self.credentials is None or "http" not in self.facts["open_ports"]:
            return
        base = f"http://{self.host()}:{self.ports['http']}"
        auth = httpx.DigestAuth(self.credentials.username, self.credentials.password)
        if maker == "Hikvision":
            got = await self.bounded(
                "Hikvision ISAPI EZVIZ setting",
                lambda: self.get(f"{base}/ISAPI/System/Network/EZVIZ", auth),
            )
            if got is not None and got[0].status_code == 200:
                enabled = first_text(parse_xml(got[1]), "enabled")
                self.facts["cloud"] = {
                    "service": "EZVIZ (Hik-Connect)",
                    "enabled": enabled == "true",
                }
        elif maker == "Dahua":
            url = f"{base}/cgi-bin/configManager.cgi?action=getConfig&name=T2UServer"
            got = await self.bounded("Dahua P2P setting", lambda: self.get(url, auth))
            if got is not None and got[0].status_code == 200:
                enabled = re.search(rb"T2UServer\.Enable=(\w+)", got[1])
                self.facts["cloud"] = {
                    "service": "Dahua P2P (T2U)",
                    "enabled": bool(enabled and enabled.group(1) == b"true"),
                }


async def probe_device(
    address: str,
    ports: dict[str, int] | None = None,
    credentials: Credentials | None = None,
    limits: Limits | None = None,
    maker_hint: Callable[[dict[str, Any]], str | None] | None = None,
    defaults: dict[str, int] | None = None,
) -> ProbeResult:
    """Everything ``address`` says about itself. ``ports``: where its services were
    found; ``defaults``: where to look for the others (:data:`DEFAULT_PORTS`).
    ``maker_hint`` names the maker from the facts so far, to pick the maker's read of
    its cloud setting. It answered when any service answered (an open port that never
    says anything is not an answer)."""
    started = time.monotonic()
    prober = Prober(
        address, ports or {}, credentials, limits or Limits(), defaults or DEFAULT_PORTS
    )
    async with prober.client:
        await prober.open_ports()
        if prober.facts["open_ports"]:
            await asyncio.gather(
                prober.onvif(),
                prober.web("http"),
                prober.web("https"),
                prober.certificate(),
                prober.rtsp(),
            )
            if maker_hint is not None:
                await prober.cloud(maker_hint(prober.facts))
    return ProbeResult(
        prober.answered, round(time.monotonic() - started, 3), prober.facts, prober.problems
    )
