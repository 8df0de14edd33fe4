"""How many SMS segments a text costs: what the member's phone receives and the merchant pays.

Design overview (3GPP TS 23.038 and TS 23.040):

* A text made only of characters of the GSM 03.38 7-bit default alphabet is sent as GSM-7:
  160 septets fit one SMS. Characters of the extension table (``^ { } \\ [ ~ ] | €`` and form
  feed) are sent as ESC + character, so each costs 2 septets.
* Anything else (Chinese, most emoji, curly quotes) forces UCS-2 for the whole text: 70
  UTF-16 code units fit one SMS, and a character outside the Basic Multilingual Plane (an
  emoji) is a surrogate pair, 2 units.
* A longer text is split into concatenated parts, each losing room to the 6-byte user data
  header: 153 septets or 67 units per part. A part never ends in the middle of an escape
  pair or a surrogate pair (phones would show garbage), so such a character moves whole to
  the next part; the count below is exact for that rule, not a division.

Chinese carriers bill by the same 70 / 67 rule (counting the 【signature】), so the count
holds for Aliyun as well as for Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]

#: The GSM 03.38 default alphabet (ESC, 0x1B, is left out: it only introduces the extension).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table: each is sent as ESC + code, 2 septets.
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class SmsCount:
    """The encoding a text needs, its length in characters and units, and its segments."""

    encoding: Encoding
    characters: int  # Unicode code points, as a person counts
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int

    @property
    def per_segment(self) -> int:
        """Units that fit in each segment at this length (single or concatenated)."""
        single, part = ((GSM_SINGLE, GSM_PART) if self.encoding == "GSM-7"
                        else (UCS2_SINGLE, UCS2_PART))
        return single if self.segments <= 1 else part


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM 03.38 default alphabet or its extension."""
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def _unit_costs(text: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if ch in GSM_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _parts(costs: list[int], part_size: int) -> int:
    """Parts needed when each character's units must stay together in one part."""
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part_size:
            parts += 1
            used = 0
        used += cost
    return parts


def count(text: str) -> SmsCount:
    """The exact segment count of ``text`` (0 segments for an empty text: nothing to send)."""
    encoding: Encoding = "GSM-7" if is_gsm7(text) else "UCS-2"
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, part = ((GSM_SINGLE, GSM_PART) if encoding == "GSM-7"
                    else (UCS2_SINGLE, UCS2_PART))
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = _parts(costs, part)
    return SmsCount(encoding=encoding, characters=len(text), units=units, segments=segments)
