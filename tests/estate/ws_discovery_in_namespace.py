"""Run inside a fresh network namespace by test_discover.py: publish one ONVIF
NetworkVideoTransmitter with `wsdiscovery` on a veth address and print, as JSON, what
:func:`watchkeeper.estate.discover.ws_discover` finds."""

from __future__ import annotations

import json
import sys

from wsdiscovery import QName, Scope
from wsdiscovery.publishing import ThreadedWSPublishing

from watchkeeper.estate.discover import ws_discover

address, port = sys.argv[1], int(sys.argv[2])
publisher = ThreadedWSPublishing()
publisher.start()
publisher.publishService(
    types=[QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")],
    scopes=[
        Scope("onvif://www.onvif.org/name/SimCam"),
        Scope("onvif://www.onvif.org/hardware/DS-2CD2143G0-I"),
    ],
    xAddrs=[f"http://{address}:{port}/onvif/device_service"],
)
try:
    found = ws_discover(timeout=2.0)
finally:
    publisher.stop()
print(  # noqa: T201 - the parent test reads stdout
    json.dumps(
        [{"address": f.address, "ports": f.ports, "via": f.via, "scopes": f.scopes} for f in found]
    )
)
