"""Message templates: what a member reads, in their language, by e-mail or SMS.

Design overview:

* A template is one Jinja2 source per language (``default_templates/<language>/<name>.j2``,
  or an override the merchant edited) with up to four blocks: ``subject``, ``text`` (the
  plain-text e-mail), ``html`` (optional: without it the text becomes simple HTML) and
  ``sms``. Languages are ``zh_CN`` and ``en``; a template missing in the member's language
  falls back to the deployment's default language.
* Templates are rendered in a sandbox (merchants edit them; a template must not reach
  Python internals) with ``StrictUndefined``: a misspelt variable is an error naming it,
  never a blank in a message sent to thousands. HTML is autoescaped; text and SMS are not.
* The variables are typed views, not ORM rows: ``member``, ``store``, ``brand`` and
  ``links`` always; ``sale``, ``coupon``, ``points``, ``tier``, ``renewal``,
  ``replenishment``, ``holiday``, ``anniversary``, ``winback``, ``complaint``,
  ``campaign`` and ``otp`` when the template needs them (each template declares which it requires);
  ``picks`` (the member's next-best products from the nightly analytics, best first, each
  with ``name`` and ``price_minor``; possibly empty) in every marketing message.
  Money is an integer of minor units, shown through the ``money`` filter (Babel, per
  locale, in the brand's currency); dates through ``date``, instants through ``datetime``
  (in the store's time zone).
* The rules that must hold for every message are applied here, in code, so no template can
  forget them: every SMS starts with the brand signature (【品牌】 / [Brand]); every
  *marketing* SMS ends with the opt-out line (退订回T / Reply STOP to opt out) and every
  marketing e-mail with an unsubscribe link (and a List-Unsubscribe header, see
  :meth:`RenderedMessage.email`); transactional messages (a receipt, a tier upgrade) carry
  neither opt-out. Which templates are marketing is decided in :data:`TEMPLATES`.
* Aliyun sends SMS by registered template code plus parameters, not free text; each
  template lists its SMS parameters (name -> expression) in :data:`TEMPLATES`, and the
  merchant registers an Aliyun template using the same ``${name}`` placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    DictLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from patron.core.errors import NotFound, ValidationFailed
from patron.core.money import minor_digits
from patron.messaging import sms as sms_count
from patron.messaging.channels.base import ChannelKind, Message

Language = Literal["en", "zh_CN"]
LANGUAGES: tuple[Language, ...] = ("zh_CN", "en")
DEFAULTS_DIR = Path(__file__).parent / "default_templates"
CAMPAIGN_CACHE_SIZE = 64


class Purpose(StrEnum):
    """Transactional messages answer something the member did; marketing ones invite."""

    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


@dataclass(frozen=True)
class TemplateSpec:
    """What patron knows about a template beyond its text."""

    name: str
    purpose: Purpose
    description: str
    requires: tuple[str, ...] = ()
    sms_params: Mapping[str, str] = field(default_factory=dict)


_PERSON = {"name": "member.name"}

#: The built-in templates. ``requires`` names the context fields a template cannot do
#: without; ``sms_params`` are the Aliyun template parameters (name -> Jinja expression).
TEMPLATES: dict[str, TemplateSpec] = {spec.name: spec for spec in (
    TemplateSpec("receipt", Purpose.TRANSACTIONAL, "Receipt after a purchase",
                 ("sale",), {**_PERSON, "store": "store.name",
                             "amount": "sale.total_minor | money",
                             "discount": "sale.discount_minor | money",
                             "points": "sale.points_earned | number",
                             "balance": "member.points_balance | number",
                             "wallet": "member.wallet_balance_minor | money"}),
    TemplateSpec("birthday", Purpose.MARKETING, "Birthday greeting, with a gift coupon if any",
                 (), {**_PERSON, "coupon": "coupon.name if coupon is defined else ''",
                      "expires": "coupon.valid_until | date if coupon is defined else ''"}),
    TemplateSpec("anniversary", Purpose.MARKETING, "A member's anniversary (joining, wedding…)",
                 ("anniversary",), {**_PERSON, "occasion": "anniversary.label",
                                    "coupon": "coupon.name if coupon is defined else ''"}),
    TemplateSpec("holiday", Purpose.MARKETING, "Public or lunar holiday greeting",
                 ("holiday",), {**_PERSON, "holiday": "holiday.name",
                                "coupon": "coupon.name if coupon is defined else ''"}),
    TemplateSpec("points_expiring", Purpose.TRANSACTIONAL, "Points about to expire",
                 ("points",), {**_PERSON, "points": "points.expiring | number",
                               "date": "points.expires_on | date",
                               "balance": "member.points_balance | number"}),
    TemplateSpec("tier_upgraded", Purpose.TRANSACTIONAL, "Member reached a higher tier",
                 ("tier",), {**_PERSON, "tier": "tier.current"}),
    TemplateSpec("membership_renewal", Purpose.TRANSACTIONAL, "Paid membership ends soon",
                 ("renewal",), {**_PERSON, "plan": "renewal.plan",
                                "date": "renewal.ends_on | date",
                                "price": "renewal.price_minor | money"}),
    TemplateSpec("replenishment", Purpose.MARKETING, "Time to restock a regular purchase",
                 ("replenishment",), {**_PERSON, "product": "replenishment.product"}),
    TemplateSpec("winback", Purpose.MARKETING, "A lapsing member is invited back",
                 ("winback",), {**_PERSON, "store": "store.name",
                                "coupon": "coupon.name if coupon is defined else ''"}),
    TemplateSpec("survey", Purpose.MARKETING, "Satisfaction survey after a visit",
                 ("links.survey",), {**_PERSON, "store": "store.name", "link": "links.survey"}),
    TemplateSpec("complaint_followup", Purpose.TRANSACTIONAL, "Follow-up on a complaint",
                 ("complaint",), {**_PERSON, "ref": "complaint.reference"}),
    TemplateSpec("campaign", Purpose.MARKETING, "A marketer's free text for a campaign",
                 ("campaign",), {**_PERSON, "text": "campaign.sms"}),
    TemplateSpec("otp", Purpose.TRANSACTIONAL, "One-time code to sign in to the member page",
                 ("otp",), {"code": "otp.code", "minutes": "otp.minutes"}),
)}

SMS_SIGNATURE: dict[str, Callable[[str], str]] = {
    "zh_CN": lambda brand: f"【{brand}】",
    "en": lambda brand: f"[{brand}] ",
}
SMS_OPT_OUT: dict[str, str] = {"zh_CN": "退订回T", "en": "Reply STOP to opt out"}


# ---------------------------------------------------------------- the variables


@dataclass(frozen=True, kw_only=True)
class BrandView:
    name: str
    currency: str = "CNY"
    sms_signature: str | None = None  # the approved SMS signature, if not the brand name
    service_phone: str = ""
    website: str = ""

    @property
    def signature(self) -> str:
        return self.sms_signature or self.name


@dataclass(frozen=True, kw_only=True)
class MemberView:
    name: str
    card_no: str = ""
    tier: str = ""
    points_balance: int = 0
    wallet_balance_minor: int = 0


@dataclass(frozen=True, kw_only=True)
class StoreView:
    name: str
    phone: str = ""
    address: str = ""
    timezone: str = "Asia/Shanghai"


@dataclass(frozen=True, kw_only=True)
class Links:
    """Absolute URLs, signed by the caller where they identify the member."""

    self_service: str
    unsubscribe: str | None = None
    survey: str | None = None


@dataclass(frozen=True, kw_only=True)
class SaleLineView:
    name: str
    quantity: int
    total_minor: int


@dataclass(frozen=True, kw_only=True)
class SaleDiscountView:
    label: str
    amount_minor: int


@dataclass(frozen=True, kw_only=True)
class SaleView:
    receipt_no: str
    occurred_at: datetime
    subtotal_minor: int
    discount_minor: int
    total_minor: int
    points_earned: int = 0
    points_redeemed: int = 0
    wallet_paid_minor: int = 0
    lines: tuple[SaleLineView, ...] = ()
    discounts: tuple[SaleDiscountView, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CouponView:
    name: str  # says what it is worth: "满200减30", "¥30 off over ¥200"
    code: str
    valid_until: date


@dataclass(frozen=True, kw_only=True)
class PointsExpiryView:
    expiring: int
    expires_on: date


@dataclass(frozen=True, kw_only=True)
class TierChangeView:
    current: str
    previous: str | None = None
    discount_pct: int = 0
    points_multiplier_pct: int = 100
    benefits: str = ""


@dataclass(frozen=True, kw_only=True)
class RenewalView:
    plan: str
    ends_on: date
    price_minor: int
    benefits: str = ""


@dataclass(frozen=True, kw_only=True)
class ReplenishmentView:
    product: str
    last_bought_on: date


@dataclass(frozen=True, kw_only=True)
class HolidayView:
    name: str


@dataclass(frozen=True, kw_only=True)
class AnniversaryView:
    label: str  # "our first meeting", "结婚纪念日"
    years: int | None = None


@dataclass(frozen=True, kw_only=True)
class WinbackView:
    last_visit_on: date
    days_away: int


@dataclass(frozen=True, kw_only=True)
class ProductPickView:
    """One of the member's next-best products (the nightly analytics' suggestion)."""

    name: str
    price_minor: int


@dataclass(frozen=True, kw_only=True)
class ComplaintView:
    reference: str
    summary: str = ""
    handled_by: str = ""


@dataclass(frozen=True, kw_only=True)
class OtpView:
    """A one-time sign-in code and how many minutes it stays valid."""

    code: str
    minutes: int


@dataclass(frozen=True, kw_only=True)
class CampaignView:
    """The marketer's own words; they may use the same variables as any template."""

    subject: str
    body: str
    sms: str = ""  # a shorter text for SMS; the body is used when empty


@dataclass(frozen=True, kw_only=True)
class MessageContext:
    """Everything a template may use; the optional parts only when the message needs them."""

    member: MemberView
    store: StoreView
    brand: BrandView
    links: Links
    sale: SaleView | None = None
    coupon: CouponView | None = None
    points: PointsExpiryView | None = None
    tier: TierChangeView | None = None
    renewal: RenewalView | None = None
    replenishment: ReplenishmentView | None = None
    holiday: HolidayView | None = None
    anniversary: AnniversaryView | None = None
    winback: WinbackView | None = None
    complaint: ComplaintView | None = None
    campaign: CampaignView | None = None
    otp: OtpView | None = None
    #: next-best products, best first (marketing messages; may be empty)
    picks: tuple[ProductPickView, ...] | None = None

    def variables(self) -> dict[str, object]:
        """The template variables: absent parts are left undefined, not ``None``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {name: value for name, value in values.items() if value is not None}


# ---------------------------------------------------------------- the result


@dataclass(frozen=True)
class RenderedMessage:
    """A template rendered for one member, ready to become e-mail or SMS messages."""

    template: str
    language: Language
    purpose: Purpose
    subject: str
    text: str
    html: str
    sms_text: str
    sms: sms_count.SmsCount
    sms_params: dict[str, str]
    unsubscribe_url: str | None

    @property
    def segments(self) -> int:
        return self.sms.segments

    def email(self, *, to: str, dedupe_key: str, recipient_name: str | None = None,
              metadata: Mapping[str, str] | None = None) -> Message:
        """The e-mail :class:`Message` (List-Unsubscribe set for marketing)."""
        return Message(kind=ChannelKind.EMAIL, recipient=to, dedupe_key=dedupe_key,
                       subject=self.subject, body=self.text, html_body=self.html,
                       recipient_name=recipient_name,
                       unsubscribe_url=self.unsubscribe_url, template=self.template,
                       metadata=dict(metadata or {}))

    def sms_message(self, *, to: str, dedupe_key: str,
                    metadata: Mapping[str, str] | None = None) -> Message:
        """The SMS :class:`Message`, with the template parameters Aliyun needs."""
        return Message(kind=ChannelKind.SMS, recipient=to, dedupe_key=dedupe_key,
                       body=self.sms_text, template=self.template,
                       template_params=dict(self.sms_params), metadata=dict(metadata or {}))


# ---------------------------------------------------------------- errors


class UnknownTemplate(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no message template {name!r}", "template",
                         code="unknown_template")


class TemplateRenderError(ValidationFailed):
    """A template that cannot be rendered: a syntax error, an unknown variable, a forbidden
    operation. The message says which template, language and part."""

    def __init__(self, message: str, field: str = "template") -> None:
        super().__init__(message, field, code="template_error")


# ---------------------------------------------------------------- formatting


def normalise_language(language: str | None, default: Language = "en") -> Language:
    """``zh``, ``zh-CN``, ``zh_Hans_CN`` -> ``zh_CN``; ``en-GB`` -> ``en``; else the default."""
    if not language:
        return default
    tag = language.replace("-", "_").lower()
    if tag.startswith("zh"):
        return "zh_CN"
    if tag.startswith("en"):
        return "en"
    return default


@functools.cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def format_money(amount_minor: int, currency: str, language: str) -> str:
    """Minor units as money for the locale, exactly (``12800`` CNY -> ``¥128.00``)."""
    major = Decimal(amount_minor).scaleb(-minor_digits(currency))
    return str(format_currency(major, currency, locale=_locale(language)))


@pass_context
def _money(context: Context, amount_minor: int) -> str:
    return format_money(int(amount_minor), context["brand"].currency, context["_language"])


@pass_context
def _number(context: Context, value: int) -> str:
    return str(format_decimal(value, locale=_locale(context["_language"])))


@pass_context
def _date(context: Context, value: date | datetime, style: str = "long") -> str:
    if isinstance(value, datetime):
        value = value.astimezone(ZoneInfo(context["store"].timezone)).date()
    return str(format_date(value, style, locale=_locale(context["_language"])))


@pass_context
def _datetime(context: Context, value: datetime) -> str:
    """An instant in the store's time zone, e.g. ``2026年11月23日 18:00``."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    local = aware.astimezone(ZoneInfo(context["store"].timezone))
    day = format_date(local.date(), "long", locale=_locale(context["_language"]))
    return f"{day} {local:%H:%M}"


# ---------------------------------------------------------------- rendering


# ASCII URL characters only (a Chinese sentence may follow a link without a space); "&" is
# there because the text was HTML-escaped first, so "&amp;" stays part of the link.
_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#@!$&*+,;=%]+")
_TRAILING = ".,;:!?"


def text_to_html(text: str) -> Markup:
    """Plain text as HTML paragraphs: escaped, line breaks kept, links clickable."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out = []
    for paragraph in paragraphs:
        escaped = str(escape(paragraph))
        linked = _URL.sub(_link, escaped)
        out.append("<p>" + linked.replace("\n", "<br>\n") + "</p>")
    return Markup("\n".join(out))  # noqa: S704 - every piece was escaped above


def _link(match: re.Match[str]) -> str:
    url = match.group(0).rstrip(_TRAILING)
    rest = match.group(0)[len(url):]
    return f'<a href="{url}">{url}</a>{rest}'


def _tidy(text: str) -> str:
    """Trailing spaces off every line, at most one blank line in a row, no outer blanks."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def _one_line(text: str) -> str:
    """Lines joined into one: with a space between Latin words, none between Chinese ones."""
    out = ""
    for line in text.splitlines():
        piece = " ".join(line.split())
        if not piece:
            continue
        if out and (out[-1].isascii() or piece[0].isascii()):
            out += " "
        out += piece
    return out


class TemplateRenderer:
    """Renders patron's templates (built-in, or the merchant's overrides) in a sandbox.

    ``overrides`` maps ``"<language>/<name>"`` to a template source with the same blocks as
    the built-in ones; the admin saves them after :meth:`check_source` accepted them.
    """

    def __init__(self, *, default_language: Language = "en",
                 overrides: Mapping[str, str] | None = None,
                 specs: Mapping[str, TemplateSpec] | None = None) -> None:
        self.default_language = default_language
        self.specs = dict(specs or TEMPLATES)
        loader = _loader(overrides or {})
        # auto_reload off: the built-in files ship with the package and overrides are fixed
        # per renderer, so checking file times on every render would be wasted work.
        common: dict[str, Any] = {"loader": loader, "undefined": StrictUndefined,
                                  "auto_reload": False,
                                  "trim_blocks": True, "lstrip_blocks": True}
        self._text_env = SandboxedEnvironment(autoescape=False, **common)
        self._html_env = SandboxedEnvironment(autoescape=True, **common)
        for env in (self._text_env, self._html_env):
            env.filters.update(money=_money, number=_number, date=_date, datetime=_datetime)
        self._campaign_cache: dict[str, Template] = {}
        self._expressions: dict[str, Callable[..., Any]] = {}

    # -- public

    def render(self, template: str, *, language: str | None,
               context: MessageContext) -> RenderedMessage:
        """Render ``template`` for one member in their language (or the default one)."""
        spec = self.spec(template)
        missing = [name for name in spec.requires if _lookup(context, name) is None]
        if missing:
            raise TemplateRenderError(f"Template {template!r} needs {', '.join(missing)} "
                                      "in its context")
        if spec.purpose is Purpose.MARKETING and not context.links.unsubscribe:
            raise TemplateRenderError(f"Template {template!r} is marketing and needs an "
                                      "unsubscribe link", "links.unsubscribe")
        lang = self._available_language(template, normalise_language(
            language, self.default_language))
        variables = context.variables()
        variables["_language"] = lang
        variables["_purpose"] = spec.purpose.value
        if context.campaign is not None:
            variables["campaign"] = self._render_campaign(context.campaign, variables, lang)
        return self._render(spec, lang, variables, context)

    def preview(self, template: str, *, language: str | None,
                member: MemberView | None = None, brand: BrandView | None = None,
                store: StoreView | None = None) -> RenderedMessage:
        """The template rendered with sample data (and optionally a real member), for the
        admin's preview and for checking an edited template before it is saved."""
        return self.render(template, language=language, context=sample_context(
            language or self.default_language, member=member, brand=brand, store=store))

    def check_source(self, template: str, language: str, source: str) -> RenderedMessage:
        """Render a candidate override with sample data; raises :class:`TemplateRenderError`
        (naming the line) if it would fail for a real member."""
        lang = normalise_language(language, self.default_language)
        trial = TemplateRenderer(default_language=self.default_language,
                                 overrides={f"{lang}/{template}": source}, specs=self.specs)
        return trial.preview(template, language=lang)

    def spec(self, template: str) -> TemplateSpec:
        try:
            return self.specs[template]
        except KeyError:
            raise UnknownTemplate(template) from None

    # -- internals

    def _available_language(self, template: str, language: Language) -> Language:
        for candidate in (language, self.default_language, *LANGUAGES):
            try:
                self._text_env.get_template(_path(candidate, template))
            except TemplateNotFound:
                continue
            except TemplateSyntaxError as exc:
                raise _syntax_error(template, candidate, exc) from None
            return candidate
        raise UnknownTemplate(template)

    def _render_campaign(self, campaign: CampaignView, variables: dict[str, object],
                         lang: Language) -> CampaignView:
        """The marketer's text is itself a small template (``{{ member.name }}`` works)."""
        def part(name: str, source: str) -> str:
            where = f"campaign {name} ({lang})"
            try:
                return self._campaign_template(source).render(variables)
            except TemplateSyntaxError as exc:
                raise TemplateRenderError(f"{where}, line {exc.lineno}: {exc.message}",
                                          f"campaign.{name}") from None
            except (UndefinedError, SecurityError, TemplateError) as exc:
                raise TemplateRenderError(f"{where}: {exc}", f"campaign.{name}") from None

        body = part("body", campaign.body)
        return CampaignView(subject=part("subject", campaign.subject), body=body,
                            sms=part("sms", campaign.sms) if campaign.sms else body)

    def _expression(self, expression: str) -> Callable[..., Any]:
        """An SMS parameter's expression, compiled once (compiling costs more than running)."""
        compiled = self._expressions.get(expression)
        if compiled is None:
            compiled = self._expressions[expression] = self._text_env.compile_expression(
                expression, undefined_to_none=False)
        return compiled

    def _campaign_template(self, source: str) -> Template:
        """Compiled once per distinct text: a campaign renders the same text for thousands."""
        compiled = self._campaign_cache.get(source)
        if compiled is None:
            if len(self._campaign_cache) >= CAMPAIGN_CACHE_SIZE:
                self._campaign_cache.clear()
            compiled = self._campaign_cache[source] = self._text_env.from_string(source)
        return compiled

    def _block(self, env: SandboxedEnvironment, template: str, lang: Language, block: str,
               variables: dict[str, object]) -> str | None:
        path = _path(lang, template)
        try:
            compiled: Template = env.get_template(path)
            render = compiled.blocks.get(block)
            if render is None:
                return None
            return "".join(render(compiled.new_context(dict(variables))))
        except TemplateSyntaxError as exc:
            raise _syntax_error(template, lang, exc) from None
        except UndefinedError as exc:
            raise TemplateRenderError(
                f"Template {template!r} ({lang}), {block}: unknown variable - {exc.message}",
                f"template.{block}") from None
        except SecurityError as exc:
            raise TemplateRenderError(
                f"Template {template!r} ({lang}), {block}: not allowed - {exc}",
                f"template.{block}") from None
        except TemplateError as exc:
            raise TemplateRenderError(f"Template {template!r} ({lang}), {block}: {exc}",
                                      f"template.{block}") from None

    def _render(self, spec: TemplateSpec, lang: Language, variables: dict[str, object],
                context: MessageContext) -> RenderedMessage:
        name = spec.name
        marketing = spec.purpose is Purpose.MARKETING
        subject = _one_line(self._block(self._text_env, name, lang, "subject", variables) or "")
        text = _tidy(self._block(self._text_env, name, lang, "text", variables) or "")
        html_body = self._block(self._html_env, name, lang, "html", variables)
        # The html block was rendered with autoescape on: its output is already safe HTML.
        content = Markup(html_body) if html_body is not None else text_to_html(text)  # noqa: S704
        layout_vars = {**variables, "content": content, "subject": subject,
                       "marketing": marketing}
        footer = _tidy(self._block(self._text_env, "_layout", lang, "text_footer",
                                   layout_vars) or "")
        if footer:
            text = f"{text}\n\n--\n{footer}"
        html = (self._block(self._html_env, "_layout", lang, "html", layout_vars) or "").strip()
        sms_body = _one_line(self._block(self._text_env, name, lang, "sms", variables) or "")
        sms_text = SMS_SIGNATURE[lang](context.brand.signature) + sms_body
        if marketing:
            # Chinese runs on without a space, except after a link, which would swallow it.
            joined = lang == "zh_CN" and not (sms_text[-1:].isascii() and sms_text[-1:].isalnum())
            sms_text = f"{sms_text}{'' if joined else ' '}{SMS_OPT_OUT[lang]}"
        return RenderedMessage(
            template=name, language=lang, purpose=spec.purpose, subject=subject, text=text,
            html=html, sms_text=sms_text, sms=sms_count.count(sms_text),
            sms_params=self._sms_params(spec, lang, variables),
            unsubscribe_url=context.links.unsubscribe if marketing else None)

    def _sms_params(self, spec: TemplateSpec, lang: Language,
                    variables: dict[str, object]) -> dict[str, str]:
        params: dict[str, str] = {}
        for param, expression in spec.sms_params.items():
            try:
                value = self._expression(expression)(**variables)
                params[param] = _one_line(str(value))
            except (UndefinedError, SecurityError, TemplateError) as exc:
                raise TemplateRenderError(
                    f"SMS parameter {param!r} of template {spec.name!r} ({lang}): {exc}",
                    f"sms_params.{param}") from None
        return params


def _lookup(context: MessageContext, dotted: str) -> object:
    value: object = context
    for part in dotted.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _path(language: str, template: str) -> str:
    return f"{language}/{template}.j2"


def _loader(overrides: Mapping[str, str]) -> BaseLoader:
    files = FileSystemLoader(str(DEFAULTS_DIR))
    if not overrides:
        return files
    return ChoiceLoader([DictLoader({f"{key}.j2": source for key, source in overrides.items()}),
                         files])


def _syntax_error(template: str, language: str, exc: TemplateSyntaxError) -> TemplateRenderError:
    return TemplateRenderError(
        f"Template {template!r} ({language}), line {exc.lineno}: {exc.message}")


# ---------------------------------------------------------------- module-level use


@functools.cache
def default_renderer(default_language: Language = "en") -> TemplateRenderer:
    """A renderer of the built-in templates (compiled templates are cached inside it)."""
    return TemplateRenderer(default_language=default_language)


def render(template: str, *, language: str | None, context: MessageContext,
           default_language: Language = "en") -> RenderedMessage:
    """Render a built-in template; see :meth:`TemplateRenderer.render`."""
    return default_renderer(default_language).render(template, language=language,
                                                     context=context)


def preview(template: str, language: str | None, member: MemberView | None = None, *,
            brand: BrandView | None = None, default_language: Language = "en") -> RenderedMessage:
    """A built-in template with sample data, for the admin; see :meth:`TemplateRenderer.preview`."""
    return default_renderer(default_language).preview(template, language=language,
                                                      member=member, brand=brand)


SAMPLE_AT = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)

#: Sample words per language, so a preview reads like the real thing in either language.
_SAMPLE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "member": "Li Na", "tier": "Gold", "previous_tier": "Silver", "store": "Jing'an Store",
        "address": "88 Nanjing West Road, Shanghai", "brand": "Patron Tea",
        "oolong": "Oolong 250 g", "cup": "Tea cup", "member_discount": "Gold member 10% off",
        "coupon_discount": "Coupon ¥14.40 off", "coupon": "¥30 off over ¥200",
        "benefits": "a birthday gift and free gift wrapping",
        "plan": "Tea Club annual membership", "plan_benefits": "a free tasting every month",
        "holiday": "Mid-Autumn Festival", "anniversary": "membership anniversary",
        "complaint": "a late delivery", "staff": "Wang Fang",
        "campaign_subject": "New autumn teas are in, {{ member.name }}",
        "campaign_body": "Our autumn harvest has arrived at {{ store.name }}.\n\n"
                         "Come and taste it this weekend: the first cup is on us.",
        "campaign_sms": "Autumn harvest teas are in at {{ store.name }}, first cup on us.",
    },
    "zh_CN": {
        "member": "李娜", "tier": "金卡", "previous_tier": "银卡", "store": "静安店",
        "address": "上海市南京西路88号", "brand": "帕创茶铺",
        "oolong": "乌龙茶 250克", "cup": "品茗杯", "member_discount": "金卡会员9折",
        "coupon_discount": "优惠券立减", "coupon": "满200减30元券",
        "benefits": "生日礼和免费礼品包装",
        "plan": "茶友会年卡", "plan_benefits": "每月一次免费品鉴",
        "holiday": "中秋节", "anniversary": "入会纪念日",
        "complaint": "配送延误", "staff": "王芳",
        "campaign_subject": "{{ member.name }}，秋茶上新了",
        "campaign_body": "今年的秋茶已经到{{ store.name }}了。\n\n本周末到店品尝，第一杯我们请。",
        "campaign_sms": "秋茶已到{{ store.name }}，本周末到店第一杯免费。",
    },
}


def sample_context(language: str | None = "en", *, member: MemberView | None = None,
                   brand: BrandView | None = None, store: StoreView | None = None,
                   at: datetime = SAMPLE_AT) -> MessageContext:
    """Plausible data for every variable, so any template can be previewed."""
    w = _SAMPLE_WORDS[normalise_language(language)]
    today = at.date()
    return MessageContext(
        member=member or MemberView(name=w["member"], card_no="8800123456", tier=w["tier"],
                                    points_balance=3450, wallet_balance_minor=26_800),
        store=store or StoreView(name=w["store"], phone="021-5555 0123", address=w["address"]),
        brand=brand or BrandView(name=w["brand"], currency="CNY", service_phone="400-800-1234"),
        links=Links(self_service="https://patron.example/m/SAMPLE",
                    unsubscribe="https://patron.example/u/SAMPLE",
                    survey="https://patron.example/s/SAMPLE"),
        sale=SaleView(
            receipt_no="JA-20261123-0042", occurred_at=at, subtotal_minor=21_600,
            discount_minor=3_600, total_minor=18_000, points_earned=180,
            wallet_paid_minor=10_000,
            lines=(SaleLineView(name=w["oolong"], quantity=2, total_minor=15_600),
                   SaleLineView(name=w["cup"], quantity=1, total_minor=6_000)),
            discounts=(SaleDiscountView(label=w["member_discount"], amount_minor=2_160),
                       SaleDiscountView(label=w["coupon_discount"], amount_minor=1_440))),
        coupon=CouponView(name=w["coupon"], code="BDAY-7Q2K9",
                          valid_until=today + timedelta(days=30)),
        points=PointsExpiryView(expiring=500, expires_on=today + timedelta(days=14)),
        tier=TierChangeView(previous=w["previous_tier"], current=w["tier"], discount_pct=10,
                            points_multiplier_pct=150, benefits=w["benefits"]),
        renewal=RenewalView(plan=w["plan"], ends_on=today + timedelta(days=7),
                            price_minor=19_900, benefits=w["plan_benefits"]),
        replenishment=ReplenishmentView(product=w["oolong"],
                                        last_bought_on=today - timedelta(days=35)),
        holiday=HolidayView(name=w["holiday"]),
        anniversary=AnniversaryView(label=w["anniversary"], years=3),
        winback=WinbackView(last_visit_on=today - timedelta(days=120), days_away=120),
        complaint=ComplaintView(reference="C-2026-0117", summary=w["complaint"],
                                handled_by=w["staff"]),
        campaign=CampaignView(subject=w["campaign_subject"], body=w["campaign_body"],
                              sms=w["campaign_sms"]),
        otp=OtpView(code="428915", minutes=10),
        picks=(ProductPickView(name=w["oolong"], price_minor=7_800),
               ProductPickView(name=w["cup"], price_minor=6_000)),
    )
