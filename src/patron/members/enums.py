from __future__ import annotations

from enum import StrEnum


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"


class Calendar(StrEnum):
    SOLAR = "solar"
    LUNAR = "lunar"


class MemberStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"
    DELETED = "deleted"


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class AnniversaryKind(StrEnum):
    WEDDING = "wedding"
    FOUNDING = "founding"
    OTHER = "other"
