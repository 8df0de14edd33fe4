"""Templates: every built-in renders in both languages; the signature and opt-out rules hold
for every message; unknown variables and unsafe templates fail loudly."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from patron.messaging.channels import ChannelKind
from patron.messaging.templates import (
    TEMPLATES,
    BrandView,
    CampaignView,
    Links,
    MemberView,
    Purpose,
    TemplateRenderer,
    TemplateRenderError,
    TemplateSpec,
    UnknownTemplate,
    format_money,
    normalise_language,
    preview,
    render,
    sample_context,
)

LANGS = ["zh_CN", "en"]
ALL = [(name, lang) for name in sorted(TEMPLATES) for lang in LANGS]
MARKETING = sorted(n for n, s in TEMPLATES.items() if s.purpose is Purpose.MARKETING)
TRANSACTIONAL = sorted(n for n, s in TEMPLATES.items() if s.purpose is Purpose.TRANSACTIONAL)


def test_the_built_in_set_is_complete() -> None:
    assert set(TEMPLATES) == {
        "receipt", "birthday", "anniversary", "holiday", "points_expiring", "tier_upgraded",
        "membership_renewal", "replenishment", "winback", "survey", "complaint_followup",
        "campaign", "otp"}
    assert TEMPLATES["receipt"].purpose is Purpose.TRANSACTIONAL
    assert TEMPLATES["birthday"].purpose is Purpose.MARKETING


@pytest.mark.parametrize(("name", "language"), ALL)
def test_every_template_renders_in_both_languages(name: str, language: str) -> None:
    rendered = preview(name, language)
    assert rendered.language == language
    assert rendered.subject and "\n" not in rendered.subject
    assert rendered.text and rendered.html and rendered.sms_text
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert f'lang="{language.replace("_", "-")}"' in rendered.html
    assert rendered.segments == rendered.sms.segments >= 1
    assert "None" not in rendered.text + rendered.sms_text
    # each language reads as itself: Chinese text in zh_CN, none in English
    has_cjk = any("\u4e00" <= ch <= "\u9fff" for ch in rendered.text)
    assert has_cjk == (language == "zh_CN")
    assert set(rendered.sms_params) == set(TEMPLATES[name].sms_params)
    assert all(value for key, value in rendered.sms_params.items() if key != "coupon")


@pytest.mark.parametrize("name", MARKETING)
@pytest.mark.parametrize(("language", "signature", "opt_out"), [
    ("zh_CN", "【帕创茶铺】", "退订回T"), ("en", "[Patron Tea] ", "Reply STOP to opt out")])
def test_marketing_sms_carry_the_signature_and_the_opt_out(
        name: str, language: str, signature: str, opt_out: str) -> None:
    rendered = preview(name, language, brand=BrandView(name="Patron Tea",
                                                       sms_signature="帕创茶铺"
                                                       if language == "zh_CN" else None))
    assert rendered.sms_text.startswith(signature)
    assert rendered.sms_text.endswith(opt_out)
    assert rendered.sms_text.count(opt_out) == 1
    assert rendered.unsubscribe_url == "https://patron.example/u/SAMPLE"
    assert "https://patron.example/u/SAMPLE" in rendered.text
    assert 'href="https://patron.example/u/SAMPLE"' in rendered.html


@pytest.mark.parametrize("name", TRANSACTIONAL)
@pytest.mark.parametrize("language", LANGS)
def test_transactional_sms_carry_the_signature_but_no_opt_out(name: str, language: str) -> None:
    rendered = preview(name, language, brand=BrandView(name="帕创茶铺"))
    assert rendered.sms_text.startswith("【帕创茶铺】" if language == "zh_CN" else "[帕创茶铺] ")
    assert "退订" not in rendered.sms_text and "STOP" not in rendered.sms_text
    assert rendered.unsubscribe_url is None
    assert "/u/SAMPLE" not in rendered.text + rendered.html


def test_the_receipt_lists_what_a_shop_receipt_lists() -> None:
    zh = preview("receipt", "zh_CN")
    for expected in ("小票号：JA-20261123-0042", "乌龙茶 250克 ×2：¥156.00", "商品金额：¥216.00",
                     "金卡会员9折：-¥21.60", "实付金额：¥180.00", "其中储值支付：¥100.00",
                     "本次获得积分：180", "当前积分：3,450", "储值余额：¥268.00"):
        assert expected in zh.text
    assert "¥180.00" in zh.sms_text and "3,450" in zh.sms_text
    en = preview("receipt", "en")
    for expected in ("Receipt no. JA-20261123-0042", "Subtotal: CN¥216.00",
                     "Total: CN¥180.00", "Points earned: 180", "Points balance: 3,450",
                     "Stored value balance: CN¥268.00"):
        assert expected in en.text
    assert "<table" in en.html and "CN¥156.00" in en.html


def test_times_are_shown_in_the_stores_zone() -> None:
    context = sample_context("zh_CN", at=datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    assert "2026年11月23日 18:30" in render("receipt", language="zh_CN", context=context).text


def test_money_follows_the_locale_and_the_currencys_minor_digits() -> None:
    assert format_money(12_345, "CNY", "zh_CN") == "¥123.45"
    assert format_money(12_345, "USD", "en") == "$123.45"
    assert format_money(1_800, "JPY", "en") == "¥1,800"
    assert format_money(-2_160, "CNY", "zh_CN") == "-¥21.60"


def test_html_escapes_what_members_typed_and_text_does_not() -> None:
    member = MemberView(name="<b>Tom & Jerry</b>", points_balance=10)
    rendered = preview("birthday", "en", member)
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in rendered.html
    assert "<b>Tom" not in rendered.html
    assert "Happy birthday, <b>Tom & Jerry</b>!" in rendered.text
    receipt = preview("receipt", "en", member)  # a template with its own html block
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in receipt.html


def test_a_missing_language_falls_back_to_the_default() -> None:
    spec = TemplateSpec("thanks", Purpose.TRANSACTIONAL, "Thank-you note")
    source = ("{% block subject %}Thanks, {{ member.name }}{% endblock %}"
              "{% block text %}Thank you.{% endblock %}{% block sms %}Thank you.{% endblock %}")
    renderer = TemplateRenderer(default_language="en", overrides={"en/thanks": source},
                                specs={"thanks": spec})
    rendered = renderer.preview("thanks", language="zh_CN")
    assert rendered.language == "en"
    assert rendered.subject == "Thanks, 李娜"


def test_an_override_replaces_the_built_in_for_its_language_only() -> None:
    source = ("{% block subject %}{{ member.name }}，生日快乐（定制）{% endblock %}"
              "{% block text %}定制正文{% endblock %}{% block sms %}定制短信{% endblock %}")
    renderer = TemplateRenderer(overrides={"zh_CN/birthday": source})
    assert renderer.preview("birthday", language="zh_CN").subject == "李娜，生日快乐（定制）"
    assert renderer.preview("birthday", language="zh_CN").sms_text == "【帕创茶铺】定制短信退订回T"
    assert renderer.preview("birthday", language="en").subject == "Happy birthday, Li Na!"


def test_an_unknown_variable_is_an_error_naming_it() -> None:
    renderer = TemplateRenderer()
    source = ("{% block subject %}Hi {{ member.nmae }}{% endblock %}"
              "{% block text %}x{% endblock %}{% block sms %}x{% endblock %}")
    with pytest.raises(TemplateRenderError, match="nmae") as caught:
        renderer.check_source("birthday", "en", source)
    assert caught.value.code == "template_error"
    with pytest.raises(TemplateRenderError, match="voucher"):
        renderer.check_source("birthday", "en", "{% block text %}{{ voucher }}{% endblock %}")


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(TemplateRenderError, match="line 2"):
        TemplateRenderer().check_source("birthday", "zh_CN",
                                        "{% block text %}\n{% if %}{% endblock %}")


@pytest.mark.parametrize("source", [
    "{% block text %}{{ member.__class__.__mro__ }}{% endblock %}",
    "{% block text %}{{ ''.__class__.__subclasses__() }}{% endblock %}",
    "{% block text %}{{ member.name.format.__globals__ }}{% endblock %}",
])
def test_the_sandbox_keeps_templates_away_from_python(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        TemplateRenderer().check_source("birthday", "en", source)


def test_a_template_without_its_data_says_what_is_missing() -> None:
    context = replace(sample_context("en"), sale=None)
    with pytest.raises(TemplateRenderError, match=r"receipt.*sale"):
        render("receipt", language="en", context=context)
    context = replace(sample_context("en"), links=Links(self_service="https://x.example/m",
                                                        unsubscribe="https://x.example/u"))
    with pytest.raises(TemplateRenderError, match=r"links\.survey"):
        render("survey", language="en", context=context)


def test_marketing_without_an_unsubscribe_link_is_refused() -> None:
    context = replace(sample_context("zh_CN"), links=Links(self_service="https://x.example/m"))
    with pytest.raises(TemplateRenderError, match="unsubscribe"):
        render("birthday", language="zh_CN", context=context)
    assert render("receipt", language="zh_CN", context=context).unsubscribe_url is None


def test_an_unknown_template_is_not_found() -> None:
    with pytest.raises(UnknownTemplate):
        preview("no_such_thing", "en")


def test_optional_parts_are_left_out_when_absent() -> None:
    context = replace(sample_context("en"), coupon=None)
    rendered = render("birthday", language="en", context=context)
    assert "code" not in rendered.text
    assert rendered.sms_params["coupon"] == ""


def test_campaign_text_may_use_the_members_variables() -> None:
    context = replace(sample_context("zh_CN"), campaign=CampaignView(
        subject="{{ member.name }}，新品到店", body="{{ store.name }}的冬季新品已上架。\n\n欢迎试饮。",
        sms=""))
    rendered = render("campaign", language="zh_CN", context=context)
    assert rendered.subject == "李娜，新品到店"
    assert rendered.text.startswith("静安店的冬季新品已上架。\n\n欢迎试饮。")
    assert rendered.sms_text == "【帕创茶铺】静安店的冬季新品已上架。欢迎试饮。退订回T"
    assert "<p>静安店的冬季新品已上架。</p>" in rendered.html


def test_a_campaign_with_an_unknown_variable_is_refused() -> None:
    context = replace(sample_context("en"), campaign=CampaignView(
        subject="Hi {{ member.nickname }}", body="x"))
    with pytest.raises(TemplateRenderError, match="nickname"):
        render("campaign", language="en", context=context)


def test_links_in_text_become_clickable_in_html() -> None:
    rendered = preview("survey", "zh_CN")
    assert '<a href="https://patron.example/s/SAMPLE">https://patron.example/s/SAMPLE</a>' in (
        rendered.html)


def test_rendered_messages_become_channel_messages() -> None:
    rendered = preview("birthday", "zh_CN")
    email = rendered.email(to="li.na@example.com", dedupe_key="m-1", recipient_name="李娜")
    assert (email.kind, email.subject, email.unsubscribe_url) == (
        ChannelKind.EMAIL, rendered.subject, "https://patron.example/u/SAMPLE")
    assert email.html_body == rendered.html
    sms = rendered.sms_message(to="+8613912345678", dedupe_key="m-2")
    assert (sms.kind, sms.body, sms.template) == (ChannelKind.SMS, rendered.sms_text, "birthday")
    assert dict(sms.template_params) == rendered.sms_params


@pytest.mark.parametrize(("given", "expected"), [
    ("zh", "zh_CN"), ("zh-CN", "zh_CN"), ("zh_Hans_CN", "zh_CN"), ("en-GB", "en"),
    ("EN", "en"), ("fr", "en"), (None, "en"), ("", "en")])
def test_languages_are_normalised(given: str | None, expected: str) -> None:
    assert normalise_language(given) == expected
