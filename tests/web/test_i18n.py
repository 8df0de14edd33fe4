"""English and Simplified Chinese: a complete catalogue, the language choice, Chinese pages."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from fastapi import FastAPI
from fastapi.testclient import TestClient

from patron.auth.models import User
from patron.core.clock import FixedClock
from patron.core.db import Database
from patron.members.enums import Calendar
from patron.web import i18n
from tests.factories import World, make_member
from tests.web.helpers import csrf_of, web_login

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def _catalogue() -> dict[object, object]:
    return {m.id: m for m in i18n.read_catalogue("zh_CN") if m.id}


def _extracted() -> set[object]:
    """Every message ``pybabel extract -F babel.cfg`` finds in the templates and web code."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found: set[object] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT, method_map, options_map, keywords=keywords):
        found.add(message)
    return found


def test_every_message_in_the_catalogue_has_a_translation() -> None:
    catalogue = _catalogue()
    assert len(catalogue) > 250
    for msgid, message in catalogue.items():
        strings = message.string if isinstance(message.string, tuple) else (message.string,)  # type: ignore[attr-defined]
        assert all(s.strip() for s in strings), f"untranslated: {msgid!r}"
        assert not message.fuzzy, f"fuzzy: {msgid!r}"  # type: ignore[attr-defined]
        source = msgid if isinstance(msgid, str) else msgid[0]  # type: ignore[index]
        for s in strings:  # the same %(name)s placeholders, or formatting would break
            assert sorted(PLACEHOLDER.findall(s)) == sorted(PLACEHOLDER.findall(str(source))), msgid


def test_every_string_in_templates_and_code_is_in_the_catalogue() -> None:
    extracted = _extracted()
    assert any(isinstance(m, str) and m == "Sign in" for m in extracted)  # extraction works
    missing = extracted - set(_catalogue())
    assert not missing, f"run pybabel extract/update; missing from messages.po: {missing}"


def test_catalogue_compiles_and_translates() -> None:
    zh = i18n.translations("zh_CN")
    assert zh.gettext("Members") == "会员"
    assert zh.ngettext("%(n)s member", "%(n)s members", 5) == "%(n)s 位会员"
    assert i18n.translations("en").gettext("Members") == "Members"


@pytest.mark.parametrize(("month", "day", "leap", "expected"), [
    (8, 15, False, "农历八月十五"), (1, 1, False, "农历正月初一"), (4, 8, True, "农历闰四月初八"),
    (12, 30, False, "农历腊月三十"), (11, 20, False, "农历冬月二十"), (6, 21, False, "农历六月廿一"),
])
def test_lunar_birthdays_read_as_people_say_them(
    month: int, day: int, leap: bool, expected: str
) -> None:
    zh = i18n.Formatter("zh_CN", ZoneInfo("Asia/Shanghai"), "CNY")
    en = i18n.Formatter("en", ZoneInfo("Asia/Shanghai"), "CNY")
    args = {"calendar": Calendar.LUNAR, "year": None, "month": month, "day": day,
            "leap_month": leap}
    assert zh.birthday(**args) == expected
    assert en.birthday(**args) == f"Lunar {'leap ' if leap else ''}{month}/{day}"


def test_next_lunar_birthday_is_this_years_solar_date() -> None:
    f = i18n.Formatter("en", ZoneInfo("Asia/Shanghai"), "CNY")
    # Mid-Autumn (8/15) fell on 2026-09-25 and falls on 2027-09-15
    assert f.next_birthday(calendar=Calendar.LUNAR, month=8, day=15, leap_month=False,
                           today=date(2026, 9, 1)) == date(2026, 9, 25)
    assert f.next_birthday(calendar=Calendar.LUNAR, month=8, day=15, leap_month=False,
                           today=date(2026, 11, 23)) == date(2027, 9, 15)


def test_money_and_dates_follow_the_locale() -> None:
    zh = i18n.Formatter("zh_CN", ZoneInfo("Asia/Shanghai"), "CNY")
    en = i18n.Formatter("en", ZoneInfo("Asia/Shanghai"), "CNY")
    assert zh.money(123456) == "¥1,234.56" and en.money(-5) == "-CN¥0.05"
    assert zh.date(date(2026, 11, 23)) == "2026年11月23日"
    assert en.date(date(2026, 11, 23)) == "Nov 23, 2026"


def test_login_page_in_chinese_from_the_cookie(client: TestClient) -> None:
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    html = client.get("/login").text
    assert '<html lang="zh-CN">' in html
    assert "登录" in html and "用户名" in html and "密码" in html
    assert "Sign in" not in html


def test_switcher_sets_the_cookie_and_the_managers_own_language(
    client: TestClient, world: World, db: Database, clock: FixedClock
) -> None:
    with db.write() as s:
        m = make_member(s, clock, world.store_a, name="韩梅梅", birthday_calendar="lunar",
                        birth_month=8, birth_day=15)
    csrf = web_login(client, "manager-a")
    r = client.post("/language", data={"csrf_token": csrf, "lang": "zh_CN",
                                       "next": f"/members/{m.id}"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/members/{m.id}"
    assert client.cookies[i18n.LANG_COOKIE] == "zh_CN"
    html = client.get(f"/members/{m.id}").text
    assert "农历八月十五" in html and "营销授权" in html and "编辑资料" in html
    with db.read() as s:
        assert s.get(User, world.manager_a.id).language == "zh_CN"  # type: ignore[union-attr]
    client.cookies.clear()  # on another device, the account's language still applies
    web_login(client, "manager-a")
    assert "概览" in client.get("/").text


def test_cashier_switches_language_by_cookie(client: TestClient, world: World) -> None:
    csrf = web_login(client, "cashier-a")
    r = client.post("/language", data={"csrf_token": csrf, "lang": "zh_CN", "next": "/members"},
                    follow_redirects=False)
    assert r.status_code == 303
    html = client.get("/members").text
    assert "手机号、手机尾号 4 位、卡号或姓名" in html and "收银员" in html


def test_users_own_language_wins_over_the_cookie(
    client: TestClient, world: World, db: Database
) -> None:
    with db.write() as s:
        user = s.get(User, world.owner.id)
        assert user is not None
        user.language = "zh_CN"
    client.cookies.set(i18n.LANG_COOKIE, "en")
    web_login(client, "owner")
    client.cookies.set(i18n.LANG_COOKIE, "en")
    assert "欢迎回来，owner" in client.get("/").text


def test_deployment_default_language_applies_to_strangers(app: FastAPI, client: TestClient) -> None:
    ctx = app.state.ctx
    app.state.ctx = dataclasses.replace(
        ctx, settings=ctx.settings.model_copy(update={"default_language": "zh_CN"}))
    assert "登录" in client.get("/login").text


def test_chinese_form_errors_are_translated(client: TestClient, world: World) -> None:
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    page = client.get("/login")
    r = client.post("/login", data={"username": "owner", "password": "wrong-password",
                                    "csrf_token": csrf_of(page.text)})
    assert "用户名或密码错误。" in r.text
    csrf = web_login(client, "cashier-a")
    client.cookies.set(i18n.LANG_COOKIE, "zh_CN")
    r = client.post("/members/new", data={"csrf_token": csrf, "name": "王芳", "phone": "12345",
                                          "home_store_id": str(world.store_a.id)})
    assert 'id="e-phone">手机号无效' in r.text


def test_messages_are_plain_text() -> None:
    """Templates trust msgids (newstyle gettext marks them safe): no HTML may hide in one."""
    for msgid, message in _catalogue().items():
        strings = message.string if isinstance(message.string, tuple) else (message.string,)  # type: ignore[attr-defined]
        for text in (*(msgid if isinstance(msgid, tuple) else (msgid,)), *strings):
            assert not re.search(r"[<>&]", str(text)), msgid


def test_switcher_works_before_signing_in(client: TestClient) -> None:
    page = client.get("/login")
    r = client.post("/language", data={"csrf_token": csrf_of(page.text), "lang": "zh_CN",
                                       "next": "/login"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "登录" in client.get("/login").text


def test_areas_keep_catalogue_files_of_their_own_and_a_clash_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "zh_CN" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (folder / "messages.po").write_text(header + 'msgid "Members"\nmsgstr "会员"\n', "utf-8")
    (folder / "care.po").write_text(header + 'msgid "Outbox"\nmsgstr "发件箱"\n', "utf-8")
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    zh = i18n.compile_catalogue("zh_CN")
    assert (zh.gettext("Members"), zh.gettext("Outbox")) == ("会员", "发件箱")

    (folder / "dashboard.po").write_text(header + 'msgid "Members"\nmsgstr "成员"\n', "utf-8")
    with pytest.raises(ValueError, match=r"messages\.po and dashboard\.po"):
        i18n.read_catalogue("zh_CN")
