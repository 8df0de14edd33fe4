"""Pure rules of the members domain: phones, card numbers, birthdays, masking.

No session, no I/O, no clock: everything here is a function of its arguments.
"""

from __future__ import annotations

import calendar
import secrets
from dataclasses import dataclass
from datetime import date

import phonenumbers
from lunardate import LunarDate

from patron.core.errors import ValidationFailed
from patron.members.enums import Calendar

CARD_BODY_DIGITS = 11  # plus one Luhn check digit: 12-digit cards, 10^11 possible numbers


def normalise_phone(raw: str, region: str, *, field: str = "phone") -> str:
    """Return the E.164 form of ``raw`` or raise naming ``field``.

    Numbers without a country code are read in the deployment's default region, so a
    Chinese shop can type ``138 0013 8000`` and an international one ``+44 20 7946 0958``.
    """
    text = (raw or "").strip()
    if not text:
        raise ValidationFailed("Phone number is required", field, code="required")
    try:
        number = phonenumbers.parse(text, region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValidationFailed(f"Not a phone number: {raw!r}", field, code="invalid_phone") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed(
            f"Not a valid phone number for region {region.upper()}: {raw!r}", field,
            code="invalid_phone",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def national_digits(e164: str) -> str:
    """The national significant number, e.g. ``13800138000`` for ``+8613800138000``."""
    return str(phonenumbers.parse(e164).national_number)


def last4(e164: str) -> str:
    return e164[-4:]


def mask_phone(e164: str | None) -> str | None:
    """Mask a phone for roles that don't need it in full: ``138****5678``."""
    if not e164:
        return e164
    digits = national_digits(e164)
    if len(digits) <= 7:
        return digits[:2] + "*" * (len(digits) - 4) + digits[-2:]
    return digits[:3] + "****" + digits[-4:]


def luhn_check_digit(body: str) -> str:
    """The Luhn digit that makes ``body + digit`` pass the mod-10 check (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_valid_card_no(card_no: str) -> bool:
    return (
        card_no.isdigit() and len(card_no) >= 2
        and luhn_check_digit(card_no[:-1]) == card_no[-1]
    )


def new_card_no() -> str:
    """A random card number with a Luhn check digit; typos at the till are caught at once."""
    body = str(secrets.randbelow(9 * 10 ** (CARD_BODY_DIGITS - 1)) + 10 ** (CARD_BODY_DIGITS - 1))
    return body + luhn_check_digit(body)


@dataclass(frozen=True)
class Birthday:
    """A birthday in the calendar the member celebrates it in.

    Lunar birthdays keep the lunar month and day and whether the month is a leap month
    (闰月); the solar date they fall on changes every year and is computed when needed.
    """

    calendar: Calendar
    month: int
    day: int
    year: int | None = None
    leap_month: bool = False

    def solar_on(self, year: int) -> date:
        """The solar date of this birthday in ``year`` (for greetings and reports).

        Feb 29 falls on Feb 28 in common years. A lunar leap-month birthday is celebrated
        in the ordinary month of the same number when the year has no such leap month, and
        day 30 falls back to 29 in a short month, as is the custom.
        """
        if self.calendar is Calendar.SOLAR:
            last = calendar.monthrange(year, self.month)[1]
            return date(year, self.month, min(self.day, last))
        for leap in ((True, False) if self.leap_month else (False,)):
            for day in (self.day, 29) if self.day == 30 else (self.day,):
                try:
                    return LunarDate(year, self.month, day, leap).to_solar_date()  # type: ignore[no-any-return]
                except ValueError:
                    continue
        raise ValueError(f"no solar date for lunar {self.month}/{self.day} in {year}")


def validate_birthday(
    calendar_name: str | None, year: int | None, month: int | None, day: int | None,
    leap_month: bool = False,
) -> Birthday | None:
    """Check a birthday as typed; ``None`` when no birthday is given. Errors name the field."""
    if month is None and day is None and year is None:
        return None
    if month is None:
        raise ValidationFailed("Birthday month is required with a birthday", "birth_month")
    if day is None:
        raise ValidationFailed("Birthday day is required with a birthday", "birth_day")
    try:
        kind = Calendar(calendar_name or "solar")
    except ValueError as exc:
        raise ValidationFailed("Calendar must be 'solar' or 'lunar'", "birthday_calendar") from exc
    if not 1 <= month <= 12:
        raise ValidationFailed("Month must be between 1 and 12", "birth_month")
    if year is not None and not 1900 <= year <= 2100:
        raise ValidationFailed("Year must be between 1900 and 2100", "birth_year")
    if kind is Calendar.SOLAR:
        if leap_month:
            raise ValidationFailed("Only lunar birthdays have leap months", "birth_leap_month")
        last = calendar.monthrange(year or 2000, month)[1]  # 2000 is a leap year: allows Feb 29
        if not 1 <= day <= last:
            raise ValidationFailed(f"Day must be between 1 and {last}", "birth_day")
        return Birthday(kind, month, day, year)
    if not 1 <= day <= 30:
        raise ValidationFailed("Lunar day must be between 1 and 30", "birth_day")
    if year is not None:
        try:
            LunarDate(year, month, day, leap_month).to_solar_date()
        except ValueError as exc:
            what = "leap month" if leap_month else "day"
            raise ValidationFailed(
                f"Lunar {year}-{'闰' if leap_month else ''}{month}-{day} does not exist ({what})",
                "birth_leap_month" if leap_month else "birth_day",
            ) from exc
    return Birthday(kind, month, day, year, leap_month)


def normalise_tag(raw: str) -> str:
    tag = " ".join(raw.strip().split())
    if not tag:
        raise ValidationFailed("Tags cannot be empty", "tags")
    if len(tag) > 64:
        raise ValidationFailed("A tag has at most 64 characters", "tags")
    return tag
