"""Simulated cameras and recorders on loopback, for the estate audit's tests.

Each device listens on its own loopback address (127.x.y.z all reach the machine on
Linux) on the ports of a :class:`PortPlan`, and answers as its persona says:

- ONVIF device and media services (SOAP 1.2), with the response shapes of the ONVIF
  Core and Media specifications (``GetCapabilitiesResponse``/``Capabilities``/
  ``Media``/``XAddr``; ``GetDeviceInformationResponse`` with ``Manufacturer``,
  ``Model``, ``FirmwareVersion``, ``SerialNumber``, ``HardwareId``;
  ``GetNetworkInterfacesResponse``/``NetworkInterfaces``/``Info``/``HwAddress``;
  ``GetServicesResponse``/``Service``/``Namespace``;
  ``GetVideoAnalyticsConfigurationsResponse``/``Configurations``/
  ``AnalyticsEngineConfiguration``/``AnalyticsModule`` and ``RuleEngineConfiguration``/
  ``Rule`` with ``Name`` and ``Type`` attributes). The analytics type names of the
  personas are illustrative, not copied from a vendor.
- HTTP ``GET /`` with the vendors' publicly documented behaviour (Hikvision:
  ``Server: App-webs/`` and a redirect to ``/doc/page/login.asp``; Dahua: the
  "WEB SERVICE" login page; Axis: a redirect to HTTPS and an AXIS product title), and
  the vendors' read-only cloud settings (Hikvision ISAPI EZVIZ, Dahua T2UServer).
- RTSP ``OPTIONS`` with a ``Server`` banner, TLS with a self-signed certificate, and
  plain TCP listeners for SDK and Telnet ports (they accept and say nothing).

Misbehaving personas: ``hang`` accepts and never answers, ``malformed`` answers
SOAP with broken XML, ``huge`` sends a 100 MB body to ``GET /``. Every request each
device receives is recorded (method, path, SOAP operation), so tests can assert that
the audit only ever read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import random
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.net import unused_port

HUGE_BODY = 100 * 1024 * 1024


@dataclass(frozen=True)
class PortPlan:
    """The ports every simulated device uses (the same numbers on each address)."""

    http: int
    https: int
    rtsp: int
    hikvision_sdk: int
    dahua_sdk: int
    telnet: int

    @classmethod
    def unused(cls) -> PortPlan:
        ports: set[int] = set()
        while len(ports) < 6:
            ports.add(unused_port())
        return cls(*sorted(ports))

    def services(self) -> dict[str, int]:
        """The plan as discovery and the probe name services."""
        return {
            "http": self.http,
            "https": self.https,
            "rtsp": self.rtsp,
            "hikvision-sdk": self.hikvision_sdk,
            "dahua-sdk": self.dahua_sdk,
            "telnet": self.telnet,
        }


@dataclass
class Persona:
    name: str
    maker: str | None
    """Who really made it (what identification must say)."""
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    serial: str = ""
    mac: str = ""
    analytics: list[tuple[str, str]] = field(default_factory=list)
    """(Name, Type) of analytics modules and rules offered."""
    http_server: str | None = None
    http_title: str | None = None
    http_redirect: str | None = None
    rtsp_server: str | None = None
    services: tuple[str, ...] = ("http", "rtsp")
    """Which of the plan's ports listen."""
    cloud: str | None = None
    """``hikvision`` or ``dahua``: the read-only cloud setting it answers (enabled)."""
    behaviour: str = "normal"
    """``normal``, ``hang``, ``malformed`` or ``huge``."""


@dataclass
class Request:
    method: str
    path: str
    operation: str | None = None


@dataclass
class Device:
    persona: Persona
    address: str
    requests: list[Request] = field(default_factory=list)
    bytes_sent: int = 0


SOAP_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" '
    'xmlns:trt="http://www.onvif.org/ver10/media/wsdl" '
    'xmlns:tt="http://www.onvif.org/ver10/schema"><SOAP-ENV:Body>'
)
SOAP_TAIL = "</SOAP-ENV:Body></SOAP-ENV:Envelope>"


def onvif_answer(device: Device, operation: str, port: int) -> str:
    p = device.persona
    base = f"http://{device.address}:{port}/onvif"
    if operation == "GetCapabilities":
        body = (
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Device><tt:XAddr>{base}/device_service</tt:XAddr></tt:Device>"
            f"<tt:Media><tt:XAddr>{base}/media_service</tt:XAddr></tt:Media>"
            f"<tt:Analytics><tt:XAddr>{base}/analytics_service</tt:XAddr></tt:Analytics>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )
    elif operation == "GetServices":
        services = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace><tds:XAddr>{base}/{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor></tds:Version></tds:Service>"
            for ns, path in (
                ("http://www.onvif.org/ver10/device/wsdl", "device_service"),
                ("http://www.onvif.org/ver10/media/wsdl", "media_service"),
                ("http://www.onvif.org/ver20/analytics/wsdl", "analytics_service"),
            )
        )
        body = f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"
    elif operation == "GetDeviceInformation":
        body = (
            "<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{p.manufacturer}</tds:Manufacturer><tds:Model>{p.model}</tds:Model>"
            f"<tds:FirmwareVersion>{p.firmware}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{p.serial}</tds:SerialNumber><tds:HardwareId>88</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )
    elif operation == "GetNetworkInterfaces":
        body = (
            '<tds:GetNetworkInterfacesResponse><tds:NetworkInterfaces token="eth0">'
            "<tt:Enabled>true</tt:Enabled><tt:Info><tt:Name>eth0</tt:Name>"
            f"<tt:HwAddress>{p.mac}</tt:HwAddress><tt:MTU>1500</tt:MTU></tt:Info>"
            "</tds:NetworkInterfaces></tds:GetNetworkInterfacesResponse>"
        )
    elif operation == "GetVideoAnalyticsConfigurations":
        modules = "".join(
            f'<tt:AnalyticsModule Name="{name}" Type="{kind}"/>'
            for name, kind in p.analytics
            if "Rule" not in name
        )
        rules = "".join(
            f'<tt:Rule Name="{name}" Type="{kind}"/>'
            for name, kind in p.analytics
            if "Rule" in name
        )
        body = (
            '<trt:GetVideoAnalyticsConfigurationsResponse><trt:Configurations token="VA1">'
            "<tt:Name>VideoAnalytics</tt:Name><tt:UseCount>1</tt:UseCount>"
            f"<tt:AnalyticsEngineConfiguration>{modules}</tt:AnalyticsEngineConfiguration>"
            f"<tt:RuleEngineConfiguration>{rules}</tt:RuleEngineConfiguration>"
            "</trt:Configurations></trt:GetVideoAnalyticsConfigurationsResponse>"
        )
    else:
        return (
            SOAP_HEAD + "<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender"
            '</SOAP-ENV:Value></SOAP-ENV:Code><SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">'
            "Action not supported</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault>" + SOAP_TAIL
        )
    return SOAP_HEAD + body + SOAP_TAIL


def http_response(status: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Estate:
    """Simulated devices served by one asyncio loop in a background thread."""

    def __init__(
        self, plan: PortPlan, certificate: tuple[Path, Path], network: ipaddress.IPv4Network
    ) -> None:
        self.plan = plan
        self.network = network
        self.devices: list[Device] = []
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.AbstractServer] = []
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(*certificate)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def add(self, persona: Persona, address: str) -> Device:
        device = Device(persona, address)
        asyncio.run_coroutine_threadsafe(self._listen(device), self.loop).result(timeout=30)
        self.devices.append(device)
        return device

    async def _listen(self, device: Device) -> None:
        handlers = {
            "http": lambda r, w: self._http(device, r, w, self.plan.http),
            "https": lambda r, w: self._http(device, r, w, self.plan.https),
            "rtsp": lambda r, w: self._rtsp(device, r, w),
            "hikvision-sdk": self._silent,
            "dahua-sdk": self._silent,
            "telnet": self._silent,
        }
        for service in device.persona.services:
            port = self.plan.services()[service]
            self.servers.append(
                await asyncio.start_server(
                    handlers[service],
                    device.address,
                    port,
                    ssl=self.tls if service == "https" else None,
                    backlog=64,
                )
            )

    async def _silent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def _http(
        self, device: Device, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        p = device.persona
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in header_lines)
                if k
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            operation = None
            if method == "POST":
                found = re.search(rb"<(?:\w+:)?Body[^>]*>\s*<(?:\w+:)?(\w+)", body)
                operation = found.group(1).decode() if found else "?"
            device.requests.append(Request(method, path, operation))
            if p.behaviour == "hang":
                await reader.read()  # until the client gives up
                return
            if operation is not None:
                if p.behaviour == "malformed":
                    answer = SOAP_HEAD + "<tds:GetDeviceInformationResponse><tds:Manu"
                else:
                    answer = onvif_answer(device, operation, port)
                writer.write(
                    http_response(
                        "200 OK", {"Content-Type": "application/soap+xml"}, answer.encode()
                    )
                )
            elif p.behaviour == "huge" and path == "/":
                await self._huge(device, writer)
            elif path == "/ISAPI/System/Network/EZVIZ" and p.cloud == "hikvision":
                xml = (
                    b'<?xml version="1.0"?><EZVIZ><enabled>true</enabled>'
                    b"<registerStatus>true</registerStatus></EZVIZ>"
                )
                writer.write(http_response("200 OK", {"Content-Type": "application/xml"}, xml))
            elif path.startswith("/cgi-bin/configManager.cgi") and p.cloud == "dahua":
                text = (
                    b"table.T2UServer.Enable=true\r\n"
                    b"table.T2UServer.Server=www.easy4ipcloud.com\r\n"
                )
                writer.write(http_response("200 OK", {"Content-Type": "text/plain"}, text))
            elif path == "/":
                extra = {"Server": p.http_server} if p.http_server else {}
                if p.http_redirect:
                    target = p.http_redirect.format(address=device.address, https=self.plan.https)
                    writer.write(http_response("302 Found", {**extra, "Location": target}, b""))
                else:
                    title = p.http_title or ""
                    page = f"<html><head><title>{title}</title></head><body>login</body></html>"
                    writer.write(
                        http_response(
                            "200 OK", {**extra, "Content-Type": "text/html"}, page.encode()
                        )
                    )
            else:
                writer.write(http_response("404 Not Found", {}, b""))
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            ValueError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()

    async def _huge(self, device: Device, writer: asyncio.StreamWriter) -> None:
        writer.write(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
            f"Content-Length: {HUGE_BODY}\r\n\r\n".encode()
        )
        chunk = b"<!-- filler -->" * 4096
        while device.bytes_sent < HUGE_BODY:
            writer.write(chunk)
            device.bytes_sent += len(chunk)
            await writer.drain()  # raises once the client has hung up

    async def _rtsp(
        self, device: Device, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.decode("latin-1").split("\r\n")[0].split(" ", 2)
            device.requests.append(Request(method, path, "RTSP"))
            if device.persona.behaviour == "hang":
                await reader.read()
                return
            cseq = re.search(rb"CSeq:\s*(\d+)", head)
            writer.write(
                (
                    "RTSP/1.0 200 OK\r\n"
                    f"CSeq: {cseq.group(1).decode() if cseq else '1'}\r\n"
                    f"Server: {device.persona.rtsp_server or 'Rtsp Server'}\r\n"
                    "Public: OPTIONS, DESCRIBE, PLAY, PAUSE, SETUP, TEARDOWN, "
                    "SET_PARAMETER, GET_PARAMETER\r\n\r\n"
                ).encode()
            )
            await writer.drain()
        except (
            asyncio.IncompleteReadError,
            ConnectionError,
            ValueError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)


def self_signed(folder: Path, common_name: str) -> tuple[Path, Path]:
    """A certificate and key for the simulated HTTPS ports."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "device.crt", folder / "device.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# The simulated estate of the tests

HIKVISION_CAMERA = Persona(
    name="hikvision-camera",
    maker="Hikvision",
    manufacturer="HIKVISION",
    model="DS-2CD2143G0-I",
    firmware="V5.5.82 build 190909",
    serial="DS-2CD2143G0-I20190101AAWRC12345678",
    mac="BC:AD:28:11:22:33",
    analytics=[
        ("FaceDetection", "hikxsd:FaceDetection"),
        ("FaceCaptureRule", "hikxsd:FaceCapture"),
    ],
    http_server="App-webs/",
    http_redirect="/doc/page/login.asp?_1700000000000",
    rtsp_server="Hikvision-Webs",
    services=("http", "rtsp", "hikvision-sdk", "telnet"),
    cloud="hikvision",
)
DAHUA_NVR = Persona(
    name="dahua-nvr",
    maker="Dahua",
    manufacturer="Dahua",
    model="DHI-NVR5216-16P-4KS2E",
    firmware="4.001.0000000.3.R, Build Date 2019-08-01",
    serial="5J02F3EPAZ12345",
    mac="08:ED:ED:44:55:66",
    analytics=[
        ("FaceAttributeRule", "dh:FaceRecognition"),
        ("GenderAgeEstimation", "dh:HumanAttribute"),
        ("ExpressionAnalysis", "dh:FaceExpression"),
    ],
    http_title="WEB SERVICE",
    rtsp_server="Rtsp Server/3.0",
    services=("http", "rtsp", "dahua-sdk"),
    cloud="dahua",
)
WHITE_LABEL_CAMERA = Persona(
    name="white-label-camera",
    maker="Hikvision",
    manufacturer="Vantage Secure",
    model="VS-IPC2042",
    firmware="V5.5.53 build 180706",
    serial="VS2042-000123",
    mac="44:47:CC:77:88:99",
    http_title="Vantage Secure",
    services=("http", "rtsp", "hikvision-sdk"),
)
AXIS_CAMERA = Persona(
    name="axis-camera",
    maker="Axis",
    manufacturer="AXIS",
    model="M3106-L Mk II",
    firmware="10.12.114",
    serial="B8A44F123456",
    mac="B8:A4:4F:12:34:56",
    analytics=[("MotionRule", "tt:CellMotionDetector")],
    http_redirect="https://{address}:{https}/",
    http_title="AXIS M3106-L Mk II Network Camera",
    services=("http", "https", "rtsp"),
)
HANGING_DEVICE = Persona(
    name="hanging-device", maker=None, behaviour="hang", services=("http", "rtsp")
)
MALFORMED_DEVICE = Persona(
    name="malformed-device", maker=None, behaviour="malformed", services=("http",)
)
HUGE_DEVICE = Persona(name="huge-body-device", maker=None, behaviour="huge", services=("http",))

ESTATE = [
    HIKVISION_CAMERA,
    DAHUA_NVR,
    WHITE_LABEL_CAMERA,
    AXIS_CAMERA,
    HANGING_DEVICE,
    MALFORMED_DEVICE,
    HUGE_DEVICE,
]


def loopback_network(prefix: int = 28) -> ipaddress.IPv4Network:
    """A random block of loopback addresses for one run's devices (so that runs side by
    side do not meet); ``prefix`` from 16 to 30."""
    size = 2 ** (32 - prefix)
    start = random.randrange(1 << 16, (1 << 24) - size) // size * size
    return ipaddress.ip_network((ipaddress.ip_address("127.0.0.0") + start, prefix))


@contextmanager
def simulated_estate(
    folder: Path, personas: list[Persona] = ESTATE, prefix: int = 28
) -> Iterator[Estate]:
    """The personas on the first addresses of a fresh loopback block, on a fresh port plan."""
    network = loopback_network(prefix)
    estate = Estate(PortPlan.unused(), self_signed(folder, "simulated-camera"), network)
    try:
        for persona, host in zip(personas, network.hosts(), strict=False):
            estate.add(persona, str(host))
        yield estate
    finally:
        estate.close()
