"""Bad input on the command line: a clear one-line error and its exit code, never a
traceback, nothing stored; a folder scan goes on past a file it cannot use. And the
account commands of issue 17: `users unlock`, `tokens issue --json`."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.support.cli import Run, Sandbox, one_line_error
from tests.support.data import MODELS, build_watchlist, lfw_photos
from tests.test_governance_cli import BIDEN_PHOTOS, enrol, ok, output, set_up_organisation
from watchkeeper.config import load_settings
from watchkeeper.governance import access
from watchkeeper.governance.accounts import SignInDelayed, SignInRefused, sign_in
from watchkeeper.store.database import open_store

CONFIG_ERROR = 2
WATCHLIST_ERROR = 5


def thin_photo(folder: Path, width: int = 6000, height: int = 1) -> Path:
    path = folder / f"thin-{width}x{height}.png"
    Image.new("RGB", (width, height), (128, 128, 128)).save(path)
    return path


def no_traceback(run: Run) -> str:
    assert "Traceback" not in run.stderr, run.stderr
    return one_line_error(run)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sandbox, str]:
    """An organisation with one incident reported by bob (its id)."""
    box = Sandbox(tmp_path_factory.mktemp("shop") / "box")
    for name in ("cwd", "home", "tmp"):
        (box.root / name).mkdir(parents=True)
    return box, set_up_organisation(box)


@pytest.mark.parametrize(
    ("case", "extra", "code", "refusal"),
    [
        ("days past the calendar", ("--days", "999999999"), CONFIG_ERROR, "past the year 9999"),
        ("no days", ("--days", "0"), CONFIG_ERROR, "--days must be 1 or more"),
        (
            "an expiry whose offset leaves the calendar",
            ("--expires", "9999-12-31T23:59:59-23:59"),
            CONFIG_ERROR,
            "outside the years 1 to 9999",
        ),
    ],
)
def test_subjects_add_refuses_dates_at_the_edges(
    shop: tuple[Sandbox, str], case: str, extra: tuple[str, ...], code: int, refusal: str
) -> None:
    box, incident = shop
    run = enrol(box, "bob", incident, "Biden, J.", BIDEN_PHOTOS[:1], *extra)
    assert run.code == code, (case, run.stderr)
    assert refusal in no_traceback(run), case
    assert output(box.run("subjects", "list", "--json", "--user", "alice")) == []


def test_a_photo_6000_by_1_pixels_is_refused_by_subjects_add_and_dsar_search(
    shop: tuple[Sandbox, str], tmp_path: Path
) -> None:
    box, incident = shop
    thin = thin_photo(tmp_path)
    added = enrol(box, "bob", incident, "thin", [thin])
    assert added.code == WATCHLIST_ERROR, added.stderr
    assert thin.name in no_traceback(added)
    assert output(box.run("subjects", "list", "--json", "--user", "alice")) == []

    searched = box.run("dsar", "search", str(thin), "--json", "--user", "alice")
    assert searched.code != 0
    assert thin.name in no_traceback(searched)


def test_a_folder_scan_goes_on_past_a_6000_by_1_image(sandbox: Sandbox, tmp_path: Path) -> None:
    watchlist = build_watchlist(tmp_path / "watchlist", ["Joseph_Biden"], photos_per_subject=1)
    probes = tmp_path / "probes"
    probes.mkdir()
    thin_photo(probes)
    (probes / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    biden = lfw_photos("Joseph_Biden")[3]
    (probes / biden.name).symlink_to(biden)
    run = sandbox.run("scan", str(probes), "--watchlist", str(watchlist), "--json")
    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    records = run.records()
    assert {r["image"] for r in records if r["type"] == "match"} == {biden.name}
    assert records[-1]["type"] == "summary"


def test_a_damaged_database_file_is_one_line(sandbox: Sandbox) -> None:
    ok(sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice"))
    database = next((sandbox.root / "home").rglob("watchkeeper.db"))
    database.write_bytes(b"this is not a database, and not empty either" * 200)
    run = sandbox.run("sites", "list", "--json", "--user", "alice")
    assert run.code != 0
    no_traceback(run)


# -- accounts: unlocking a name, tokens as JSON -----------------------------------------


def test_users_unlock_lifts_the_delays_on_a_name_and_is_audited(
    shop: tuple[Sandbox, str],
) -> None:
    box, _ = shop
    ok(box.run("users", "password", "dave", "--password-stdin", "--user", "alice",
               stdin="correct horse battery staple\n"))  # fmt: skip
    home = box.root / "home"
    settings = load_settings(
        models_dir=MODELS,
        data_dir=home / ".local/share/watchkeeper",
        key_file=home / ".config/watchkeeper/key",
    )
    store = open_store(settings)
    try:

        def attempt(password: str) -> type[Exception] | None:
            with store.session() as session:
                organisation = access.organisation(session)
                try:
                    sign_in(session, store.keys, organisation, "dave", password,
                            settings.web, "203.0.113.7")  # fmt: skip
                except (SignInRefused, SignInDelayed) as refused:
                    return type(refused)
            return None

        free = settings.web.sign_in.free_per_name_and_address
        assert [attempt("wrong") for _ in range(free)] == [SignInRefused] * free
        assert attempt("correct horse battery staple") is SignInDelayed
        refused = box.run("users", "unlock", "dave", "--user", "dave")
        assert refused.code == 9, refused.stderr
        assert output(box.run("users", "unlock", "dave", "--json", "--user", "alice")) == {
            "user": "dave",
            "addresses": 1,
        }
        assert attempt("correct horse battery staple") is None
    finally:
        store.close()
    events = output(box.run("audit", "list", "--json", "--user", "alice"))
    assert any(e["action"] == "user.unlock" and e["actor"] == "alice" for e in events)


def test_tokens_issue_prints_json_with_the_token(shop: tuple[Sandbox, str]) -> None:
    box, _ = shop
    issued = output(
        box.run("tokens", "issue", "bob", "--label", "till", "--days", "7", "--json",
                "--user", "alice")
    )  # fmt: skip
    assert issued["token"].startswith(issued["prefix"])
    assert (issued["owner"], issued["label"]) == ("bob", "till")
    listed = output(box.run("tokens", "list", "--json", "--user", "alice"))
    assert any(token["prefix"] == issued["prefix"] for token in listed)
    assert "Traceback" not in box.run("tokens", "issue", "bob", "--label", "x", "--days",
                                      "999999999", "--user", "alice").stderr  # fmt: skip


def test_users_deactivate_ends_tokens_and_is_audited(shop: tuple[Sandbox, str]) -> None:
    box, _ = shop
    ok(box.run("users", "create", "gina", "--role", "reviewer", "--site", "Leeds",
               "--no-password", "--user", "alice"))  # fmt: skip
    ok(box.run("tokens", "issue", "gina", "--label", "till", "--user", "alice"))
    done = output(box.run("users", "deactivate", "gina", "--json", "--user", "alice"))
    assert done == {"user": "gina", "sessions_ended": 0, "tokens_revoked": 1}
    again = box.run("users", "deactivate", "gina", "--user", "alice")
    assert again.code == 9
    assert "already deactivated" in no_traceback(again)
    users = output(box.run("users", "list", "--json", "--user", "alice"))
    assert {u["name"]: u["active"] for u in users}["gina"] is False
    tokens = output(box.run("tokens", "list", "--json", "--user", "alice"))
    assert [t["revoked"] for t in tokens if t["user"] == "gina"] == [True], tokens
    acting = box.run("alerts", "list", "--user", "gina")
    assert acting.code == 9, acting.stderr
    assert "deactivated" in no_traceback(acting)


@pytest.mark.parametrize(
    ("args", "code", "refusal"),
    [
        (("audit", "list", "--limit", "0"), CONFIG_ERROR, "--limit must be 1 to 100,000"),
        (("audit", "list", "--limit", "9" * 30), CONFIG_ERROR, "--limit must be 1 to 100,000"),
        (("policy", "set", "--watchlist-cap-per-site", "9" * 30), 9, "the watchlist cap"),
        (("policy", "set", "--false-matches-before-suspension", "0"), 9, "false-match limit"),
        (("tokens", "issue", "bob", "--label", "x", "--days", "999999999"), 9, "between 1"),
    ],
)
def test_numbers_at_the_limits_are_refused_in_one_line(
    shop: tuple[Sandbox, str], args: tuple[str, ...], code: int, refusal: str
) -> None:
    box, _ = shop
    run = box.run(*args, "--user", "alice")
    assert run.code == code, (args, run.stderr)
    assert refusal in no_traceback(run), args
