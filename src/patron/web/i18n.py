"""Languages of the web admin: gettext catalogues, language choice and locale formatting.

The Chinese catalogue is the ``.po`` files themselves (``locale/zh_CN/LC_MESSAGES/*.po``):
they are read, merged and compiled in memory when the app starts, so there is no build step
and no compiled ``.mo`` file to forget. ``messages.po`` holds the core admin; an area of the
admin may keep its strings in a file of its own beside it (``dashboard.po``, ``care.po``) so
that people working on different areas do not edit one file. A msgid translated two
different ways in two files is an error at startup. English is the source language.

Which language a request gets: the signed-in user's own ``language`` if set, else the
``lang`` cookie the switcher sets, else the deployment's ``default_language``.

Dates, times and numbers go through Babel for the chosen locale; times are shown in the
store's time zone (DESIGN rule 7). Lunar birthdays read the way people say them:
农历八月十五 in Chinese, "Lunar 8/15" in English, with 闰 / "leap" for a leap month.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal
from babel.support import NullTranslations, Translations

from patron.auth.service import LANGUAGES
from patron.care.calendar import next_occurrence
from patron.core.clock import as_utc
from patron.core.money import minor_digits
from patron.members.enums import Calendar
from patron.members.rules import Birthday

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = "en"
LANG_COOKIE = "lang"
#: Each language is offered under its own name, so anyone can find theirs.
LANGUAGE_NAMES = {"en": "English", "zh_CN": "简体中文"}


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext_noop marker
    """Mark a string for extraction without translating it yet (it is translated on use)."""
    return message


def po_path(language: str) -> Path:
    """The main catalogue file of ``language`` (areas may add files beside it)."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def po_paths(language: str) -> list[Path]:
    """Every catalogue file of ``language``: ``messages.po`` first, then the areas' files."""
    main = po_path(language)
    return [main, *sorted(p for p in main.parent.glob("*.po") if p != main)]


def read_catalogue(language: str) -> Catalog:
    """The catalogue files of ``language`` merged into one (fuzzy entries kept, marked).

    Raises ``ValueError`` naming both files when one msgid has two different translations.
    """
    merged = Catalog(locale=language, domain=DOMAIN)
    origin: dict[object, Path] = {}
    for path in po_paths(language):
        with path.open("rb") as fh:
            part = read_po(fh, locale=language, domain=DOMAIN)
        for message in part:
            if not message.id:
                continue
            existing = merged.get(message.id)
            if existing is not None and existing.string != message.string:
                raise ValueError(
                    f"{message.id!r} is translated differently in {origin[message.id].name} "
                    f"and {path.name}")
            if existing is None:
                merged[message.id] = message
                origin[message.id] = path
    return merged


def compile_catalogue(language: str) -> Translations:
    """The merged catalogue compiled in memory (fuzzy entries are left out, as msgfmt does)."""
    buffer = io.BytesIO()
    write_mo(buffer, read_catalogue(language))
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


@functools.cache
def catalogues() -> dict[str, NullTranslations]:
    """Every supported language's translations, compiled once per process."""
    result: dict[str, NullTranslations] = {SOURCE_LANGUAGE: NullTranslations()}
    for language in LANGUAGES:
        if language != SOURCE_LANGUAGE:
            result[language] = compile_catalogue(language)
    return result


def translations(language: str) -> NullTranslations:
    return catalogues().get(language) or catalogues()[SOURCE_LANGUAGE]


def choose_language(*, user_language: str | None, cookie: str | None, default: str) -> str:
    """The user's own setting wins, then the switcher's cookie, then the deployment default."""
    for candidate in (user_language, cookie, default):
        if candidate in LANGUAGES:
            return candidate
    return SOURCE_LANGUAGE


def html_lang(language: str) -> str:
    """BCP 47 tag for ``<html lang>`` (zh_CN -> zh-CN), so fonts and screen readers fit."""
    return language.replace("_", "-")


# ---------------------------------------------------------------- lunar dates in Chinese

_ZH_DIGITS = "〇一二三四五六七八九十"
_ZH_LUNAR_MONTHS = ("正月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月",
                    "十月", "冬月", "腊月")


def zh_lunar_day(day: int) -> str:
    """初一 … 初十, 十一 … 十九, 二十, 廿一 … 廿九, 三十: the traditional day names."""
    if day <= 10:
        return "初" + _ZH_DIGITS[day]
    if day < 20:
        return "十" + _ZH_DIGITS[day - 10]
    if day == 20:
        return "二十"
    if day < 30:
        return "廿" + _ZH_DIGITS[day - 20]
    return "三十"


def zh_lunar_month_day(month: int, day: int, *, leap: bool = False) -> str:
    """``八月十五``, or ``闰四月初八`` for a leap month (without the 农历 prefix)."""
    return ("闰" if leap else "") + _ZH_LUNAR_MONTHS[month - 1] + zh_lunar_day(day)


# ---------------------------------------------------------------- the formatter


@dataclass(frozen=True)
class Formatter:
    """Locale-aware formatting for one request: the language, time zone and currency."""

    language: str
    tz: ZoneInfo
    currency: str
    region: str = "CN"

    @functools.cached_property
    def locale(self) -> Locale:
        return Locale.parse(self.language)

    def date(self, value: dt.date | None, fmt: str = "medium") -> str:
        return "" if value is None else format_date(value, fmt, locale=self.locale)

    def datetime(self, value: dt.datetime | None, fmt: str | None = None) -> str:
        """A stored UTC instant in the viewer's store time zone: "Nov 23, 2026, 18:00"."""
        if value is None:
            return ""
        local = as_utc(value).astimezone(self.tz)
        if fmt is None:  # medium date, 24-hour time: unambiguous in both languages
            return f"{format_date(local.date(), 'medium', locale=self.locale)} {local:%H:%M}"
        return format_datetime(local, fmt, tzinfo=self.tz, locale=self.locale)

    def phone(self, value: str | None) -> str:
        """An E.164 number grouped for reading: national form at home, international abroad.

        A masked phone (``139****5678``) is shown as it is.
        """
        if not value or not value.startswith("+"):
            return value or ""
        try:
            number = phonenumbers.parse(value)
        except phonenumbers.NumberParseException:
            return value
        home = phonenumbers.region_code_for_number(number) == self.region
        style = (phonenumbers.PhoneNumberFormat.NATIONAL if home
                 else phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        return str(phonenumbers.format_number(number, style))

    def number(self, value: int) -> str:
        return format_decimal(value, locale=self.locale)

    def money(self, amount_minor: int) -> str:
        """Integer minor units as money in the deployment's currency (exact: no float)."""
        major = Decimal(amount_minor).scaleb(-minor_digits(self.currency))
        return format_currency(major, self.currency, locale=self.locale)

    def birthday(self, *, calendar: Calendar | None, year: int | None, month: int | None,
                 day: int | None, leap_month: bool) -> str:
        """A birthday as people say it.

        农历八月十五 or "Lunar 8/15"; 1990年5月4日 or "May 4, 1990"; the year only if known.
        """
        if calendar is None or month is None or day is None:
            return ""
        zh = self.language.startswith("zh")
        if calendar is Calendar.LUNAR:
            if zh:
                prefix = f"{year}年" if year else ""
                return f"{prefix}农历{zh_lunar_month_day(month, day, leap=leap_month)}"
            text = f"Lunar {'leap ' if leap_month else ''}{month}/{day}"
            return f"{text} ({year})" if year else text
        if year:
            return format_date(dt.date(year, month, day), "long", locale=self.locale)
        return format_skeleton("MMMMd", dt.date(2000, month, day), locale=self.locale)

    def next_birthday(self, *, calendar: Calendar | None, month: int | None, day: int | None,
                      leap_month: bool, today: dt.date) -> dt.date | None:
        """The solar date of the next birthday on or after ``today`` (lunar ones move yearly)."""
        if calendar is None or month is None or day is None:
            return None
        try:  # a lunar year straddles two solar ones: care.calendar searches the right one
            return next_occurrence(Birthday(calendar, month, day, None, leap_month), today)
        except ValueError:
            return None
