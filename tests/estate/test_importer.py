"""Asset lists: every bad row named, nothing half-read."""

from __future__ import annotations

import pytest

from watchkeeper.errors import ConfigError
from watchkeeper.estate.importer import read_assets


def test_a_good_list_with_headers_in_any_case_and_order() -> None:
    rows = read_assets(
        "\ufeffInstaller,Location,IP,Site,Port,Brand,Model\n"
        "Acme,till,10.0.0.5,Leeds,554,HiLook,IPC-B140H\n"
        "Acme,door,10.0.0.6,Leeds,,Axis,M3106\n"
        ",,,,,,\n"
        "Acme,yard,10.0.0.7,Depot,8080,,\n"
    )
    assert [(r.line, r.site, r.address, r.ports, r.brand) for r in rows] == [
        (2, "Leeds", "10.0.0.5", {"rtsp": 554}, "HiLook"),
        (3, "Leeds", "10.0.0.6", {}, "Axis"),
        (5, "Depot", "10.0.0.7", {"http": 8080}, None),
    ]
    assert rows[0].installer == "Acme"
    assert rows[0].location == "till"
    assert rows[0].model == "IPC-B140H"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the asset list is empty"),
        ("site,brand\nLeeds,Axis\n", "missing column(s) ip"),
        ("site,ip,colour\nLeeds,10.0.0.1,red\n", "unknown column(s) colour"),
        ("site,ip\n", "has a header but no rows"),
        (
            "site,ip,port\nLeeds,10.0.0.1,99999\n,10.0.0.2,\nLeeds,10.0.0.x,80\nLeeds,10.0.0.1,80\n",
            "nothing imported: line 2: port '99999' is not 1 to 65535; line 3: no site; "
            "line 4: ip '10.0.0.x' is not an IP address",
        ),
        ("site,ip\nLeeds,10.0.0.1\nLeeds,10.0.0.1\n", "line 3: same site and ip as line 2"),
        ("site,ip\nLeeds,10.0.0.1,extra\n", "line 2: more fields than columns"),
    ],
)
def test_bad_lists_are_refused_whole(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        read_assets(text)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
