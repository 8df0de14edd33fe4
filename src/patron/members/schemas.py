"""API and form shapes of the members domain (Pydantic v2)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from patron.members.enums import AnniversaryKind, Calendar, Channel, Gender

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class StoreCreate(BaseModel):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                           pattern=r"^[A-Za-z0-9_-]+$")]
    name: Name
    address: str = Field(default="", max_length=500)
    timezone: str = "Asia/Shanghai"
    phone: str | None = Field(default=None, max_length=32)


class StoreUpdate(BaseModel):
    name: Name | None = None
    address: str | None = Field(default=None, max_length=500)
    timezone: str | None = None
    phone: str | None = Field(default=None, max_length=32)
    active: bool | None = None


class StoreRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    code: str
    name: str
    address: str
    timezone: str
    phone: str | None
    active: bool


class AnniversaryIn(BaseModel):
    kind: AnniversaryKind
    label: str = Field(default="", max_length=200)
    on: date


class AnniversaryRead(AnniversaryIn):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID


class MemberCreate(BaseModel):
    name: Name
    phone: str = Field(max_length=40)
    email: EmailStr | None = None
    gender: Gender | None = None
    birthday_calendar: Calendar | None = None
    birth_year: int | None = None
    birth_month: int | None = None
    birth_day: int | None = None
    birth_leap_month: bool = False
    anniversaries: list[AnniversaryIn] = Field(default_factory=list, max_length=20)
    tags: list[str] = Field(default_factory=list, max_length=50)
    preferences: str = Field(default="", max_length=4000)
    home_store_id: uuid.UUID | None = None
    referral_source: str | None = Field(default=None, max_length=200)
    referred_by_card_no: str | None = Field(default=None, max_length=20)
    sms_consent: bool = False
    email_consent: bool = False


class MemberUpdate(BaseModel):
    """A partial update: only the fields present in the request change."""

    name: Name | None = None
    phone: str | None = Field(default=None, max_length=40)
    email: EmailStr | None = None
    gender: Gender | None = None
    birthday_calendar: Calendar | None = None
    birth_year: int | None = None
    birth_month: int | None = None
    birth_day: int | None = None
    birth_leap_month: bool | None = None
    anniversaries: list[AnniversaryIn] | None = Field(default=None, max_length=20)
    tags: list[str] | None = Field(default=None, max_length=50)
    preferences: str | None = Field(default=None, max_length=4000)
    home_store_id: uuid.UUID | None = None
    referral_source: str | None = Field(default=None, max_length=200)


class ConsentChange(BaseModel):
    channel: Channel
    granted: bool
    source: str = Field(default="admin", max_length=64)
    note: str = Field(default="", max_length=500)


class ConsentEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    channel: Channel
    granted: bool
    source: str
    at: datetime
    store_id: uuid.UUID | None
    note: str


class MemberRead(BaseModel):
    id: uuid.UUID
    card_no: str
    name: str
    phone: str | None = Field(
        description="E.164, or masked (138****5678) for cashiers and POS keys")
    phone_masked: bool
    email: str | None
    gender: Gender | None
    birthday_calendar: Calendar | None
    birth_year: int | None
    birth_month: int | None
    birth_day: int | None
    birth_leap_month: bool
    anniversaries: list[AnniversaryRead]
    tags: list[str]
    preferences: str
    home_store_id: uuid.UUID
    enrolled_store_id: uuid.UUID
    enrolled_by_id: uuid.UUID | None
    referral_source: str | None
    referred_by_id: uuid.UUID | None
    sms_consent: bool
    email_consent: bool
    status: str
    merged_into_id: uuid.UUID | None
    joined_at: datetime
    updated_at: datetime


class MemberPage(BaseModel):
    items: list[MemberRead]
    total: int
    page: int
    page_size: int


class MergeRequest(BaseModel):
    duplicate_id: uuid.UUID


class MergeResult(BaseModel):
    survivor: MemberRead
    merged_id: uuid.UUID
    moved: dict[str, int]


class NoteCreate(BaseModel):
    """A staff note about the member (signed with the caller's user and dated now)."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(min_length=1, max_length=2000, description="The note, at most 2000 "
                      "characters; notes are never edited, a correction is a new note")


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    member_id: uuid.UUID
    author_id: uuid.UUID | None = Field(description="None for a note moved from the old "
                                        "notes text whose author no longer has an account")
    author_name: str
    body: str
    created_at: datetime
