"""Sign-in throttling on a real database: growing delays per name and address and per
address, the global ceiling, unlocking, and what none of them may do: keep an account's
owner out of the shop's own machine."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from tests.support.shop import Shop
from tests.support.web import PASSWORD, set_passwords
from watchkeeper.config import SignInLimits, WebConfig
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.accounts import SignInDelayed, SignInRefused, sign_in
from watchkeeper.governance.throttle import address_key, unlock
from watchkeeper.store.models import AuditEvent, utcnow

SHOP_MACHINE = "192.168.1.20"
ATTACKER = "203.0.113.7"
LIMITS = SignInLimits(
    free_per_name_and_address=3,
    free_per_address=6,
    first_delay_s=30,
    max_delay_minutes=4,
    forget_hours=24,
    ceiling=8,
    ceiling_window_minutes=15,
)


@pytest.fixture
def staff(shop: Shop) -> Shop:
    set_passwords(shop)
    return shop


class Clock:
    """A sign-in desk at a moment of the test's choosing."""

    def __init__(self, shop: Shop, limits: SignInLimits = LIMITS) -> None:
        self.shop = shop
        self.config = WebConfig(sign_in=limits)
        self.now = utcnow()

    def pass_time(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)

    def attempt(self, name: str, password: str, address: str) -> str:
        """'ok', 'refused' or 'delayed <seconds>'."""
        with self.shop.tx() as tx:
            try:
                sign_in(
                    tx.session, self.shop.store.keys, tx.organisation, name, password,
                    self.config, address, now=self.now,
                )  # fmt: skip
            except SignInRefused:
                return "refused"
            except SignInDelayed as delayed:
                return f"delayed {delayed.seconds}"
        return "ok"


def audit_of(shop: Shop, action: str) -> list[dict]:
    with shop.tx() as tx:
        events = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.sequence)
        )
        return [dict(event.details or {}) | {"actor": event.actor} for event in events]


def test_delays_grow_per_name_and_address_and_never_reach_the_shops_machine(
    staff: Shop,
) -> None:
    desk = Clock(staff)
    assert [desk.attempt("dave", "wrong", ATTACKER) for _ in range(3)] == ["refused"] * 3
    assert desk.attempt("dave", PASSWORD, ATTACKER) == "delayed 30"
    assert desk.attempt("dave", PASSWORD, SHOP_MACHINE) == "ok", "owner not kept out"
    delays = []
    for _ in range(5):
        desk.pass_time(seconds=int(desk.attempt("dave", "x", ATTACKER).split()[1]))
        assert desk.attempt("dave", "wrong again", ATTACKER) == "refused"
        delays.append(int(desk.attempt("dave", "wrong", ATTACKER).split()[1]))
    assert delays == [60, 120, 240, 240, 240], "doubling up to max_delay_minutes"
    assert desk.attempt("dave", PASSWORD, SHOP_MACHINE) == "ok"
    failed = audit_of(staff, "user.sign-in-failed")
    assert {event["address"] for event in failed} == {ATTACKER}
    assert failed[2]["name_and_address_delay_s"] == 30
    assert len(audit_of(staff, "user.sign-in-delayed")) == 1 + 5 * 2


def test_guesses_at_many_names_from_one_address_delay_that_address_only(staff: Shop) -> None:
    desk = Clock(staff)
    names = ["alice", "bob", "carol", "dave", "erin", "nobody"]
    assert [desk.attempt(name, "wrong", ATTACKER) for name in names] == ["refused"] * 6
    assert desk.attempt("frank", PASSWORD, ATTACKER) == "delayed 30", "the address is delayed"
    assert desk.attempt("frank", PASSWORD, SHOP_MACHINE) == "ok"
    [delayed] = audit_of(staff, "sign-in.delayed")  # the unknown name's failure began it
    assert delayed == {
        "actor": "nobody",
        "address": ATTACKER,
        "failures": 1,
        "address_delay_s": 30,
    }


def test_unknown_names_are_delayed_like_real_ones(staff: Shop) -> None:
    desk = Clock(staff)
    for name in ("dave", "no-such-person"):
        answers = [desk.attempt(name, "wrong", f"198.51.100.{len(name)}") for _ in range(4)]
        assert answers == ["refused"] * 3 + ["delayed 30"], name


def test_past_the_ceiling_only_known_addresses_may_try(staff: Shop) -> None:
    desk = Clock(staff)
    assert desk.attempt("dave", PASSWORD, SHOP_MACHINE) == "ok"  # the shop's machine is known
    for n in range(LIMITS.ceiling):
        assert desk.attempt("dave", "wrong", f"198.51.100.{n}") == "refused"
    assert desk.attempt("erin", PASSWORD, "198.51.100.200").startswith("delayed")
    assert desk.attempt("erin", PASSWORD, SHOP_MACHINE) == "ok"
    assert desk.attempt("dave", PASSWORD, SHOP_MACHINE) == "ok"
    [reached] = audit_of(staff, "sign-in.ceiling-reached")
    assert reached["failures"] == LIMITS.ceiling
    desk.pass_time(minutes=LIMITS.ceiling_window_minutes)
    assert desk.attempt("erin", PASSWORD, "198.51.100.200") == "ok", "the window ended"


def test_an_administrator_unlocks_a_name_at_every_address(staff: Shop) -> None:
    desk = Clock(staff)
    for address in (ATTACKER, "198.51.100.9"):
        for _ in range(3):
            desk.attempt("dave", "wrong", address)
        assert desk.attempt("dave", PASSWORD, address).startswith("delayed")
    with staff.tx() as tx:
        erin = access.user(tx.session, tx.organisation.id, "erin")
        dave = access.user(tx.session, tx.organisation.id, "dave")
        with pytest.raises(PolicyError):
            unlock(tx.session, staff.store.keys, tx.organisation, erin, dave)
    with staff.tx() as tx:
        alice = access.user(tx.session, tx.organisation.id, "alice")
        dave = access.user(tx.session, tx.organisation.id, "dave")
        assert unlock(tx.session, staff.store.keys, tx.organisation, alice, dave) == 2
    assert desk.attempt("dave", PASSWORD, ATTACKER) == "ok"
    assert audit_of(staff, "user.unlock") == [{"actor": "alice", "addresses": 2}]


def test_a_counter_is_forgotten_after_a_quiet_day(staff: Shop) -> None:
    desk = Clock(staff)
    for _ in range(2):
        desk.attempt("dave", "wrong", ATTACKER)
    desk.pass_time(hours=LIMITS.forget_hours + 1)
    assert [desk.attempt("dave", "wrong", ATTACKER) for _ in range(3)] == ["refused"] * 3


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_addresses_are_counted_per_ipv4_address_and_ipv6_network(
    address: str | None, counted_as: str
) -> None:
    assert address_key(address) == counted_as
