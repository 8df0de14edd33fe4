"""Channel settings: which provider sends each kind of message, and its credentials.

Read from the environment (or ``.env``) when the worker or CLI builds them, never at import
time. Each provider has its own prefix so a deployment's settings read plainly:

    PATRON_SMS_PROVIDER=aliyun            log | twilio | aliyun | gateway | none
    PATRON_EMAIL_PROVIDER=smtp            log | smtp | none
    PATRON_WEBHOOK_PROVIDER=http          log | http | none
    PATRON_MESSAGE_LOG_PATH=./patron-messages.jsonl
    PATRON_SMTP_HOST=smtp.example.com     PATRON_SMTP_SECURITY=starttls  PATRON_SMTP_FROM_ADDRESS=…
    PATRON_TWILIO_ACCOUNT_SID=AC…         PATRON_TWILIO_AUTH_TOKEN=…     PATRON_TWILIO_FROM_NUMBER=…
    PATRON_ALIYUN_SMS_ACCESS_KEY_ID=…     PATRON_ALIYUN_SMS_SIGN_NAME=…
    PATRON_ALIYUN_SMS_TEMPLATE_CODES={"receipt": "SMS_123456789", "birthday": "SMS_…"}
    PATRON_SMS_GATEWAY_URL=https://…      PATRON_SMS_GATEWAY_TOKEN=…
    PATRON_WEBHOOK_SECRET=…

Everything defaults to the ``log`` provider, so a fresh install runs end to end without any
account. A provider chosen without its credentials is refused when the settings are built,
naming the missing variable, rather than failing on the first message.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SmsProvider = Literal["log", "twilio", "aliyun", "gateway", "none"]
EmailProvider = Literal["log", "smtp", "none"]
WebhookProvider = Literal["log", "http", "none"]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class SmtpSettings(BaseSettings):
    """``PATRON_SMTP_*``: the relay e-mail goes through."""

    model_config = _config("PATRON_SMTP_")

    host: str = ""
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    from_address: str = ""
    from_name: str = ""
    reply_to: str | None = None
    envelope_from: str | None = None  # the bounce address, if not the From address
    message_id_domain: str | None = None
    local_hostname: str | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=300)


class TwilioSettings(BaseSettings):
    """``PATRON_TWILIO_*``: one Twilio account, sending from a number or a Messaging Service."""

    model_config = _config("PATRON_TWILIO_")

    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str | None = None
    messaging_service_sid: str | None = None
    status_callback_url: str | None = None
    base_url: str = "https://api.twilio.com"


class AliyunSmsSettings(BaseSettings):
    """``PATRON_ALIYUN_SMS_*``: an Aliyun SMS account, its approved signature and templates.

    ``template_codes`` maps patron's template names to the TemplateCodes approved in the
    Aliyun console (JSON in the environment).
    """

    model_config = _config("PATRON_ALIYUN_SMS_")

    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")
    sign_name: str = ""
    region_id: str = "cn-hangzhou"
    endpoint: str = "https://dysmsapi.aliyuncs.com/"
    template_codes: dict[str, str] = Field(default_factory=dict)


class SmsGatewaySettings(BaseSettings):
    """``PATRON_SMS_GATEWAY_*``: a generic JSON SMS gateway."""

    model_config = _config("PATRON_SMS_GATEWAY_")

    url: str = ""
    token: SecretStr | None = None


class WebhookSettings(BaseSettings):
    """``PATRON_WEBHOOK_*``: the signing secret used when an endpoint has none of its own."""

    model_config = _config("PATRON_WEBHOOK_")

    secret: SecretStr | None = None


class ChannelSettings(BaseSettings):
    """Which provider each kind of message goes through, with every provider's settings."""

    model_config = _config("PATRON_")

    sms_provider: SmsProvider = "log"
    email_provider: EmailProvider = "log"
    webhook_provider: WebhookProvider = "log"
    message_log_path: str = "./patron-messages.jsonl"
    http_timeout_s: float = Field(default=15.0, gt=0, le=120)
    http_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)

    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    aliyun_sms: AliyunSmsSettings = Field(default_factory=AliyunSmsSettings)
    sms_gateway: SmsGatewaySettings = Field(default_factory=SmsGatewaySettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    @model_validator(mode="after")
    def _chosen_providers_are_configured(self) -> ChannelSettings:
        missing: list[str] = []
        if self.sms_provider == "twilio":
            t = self.twilio
            if not t.account_sid:
                missing.append("PATRON_TWILIO_ACCOUNT_SID")
            if not t.auth_token.get_secret_value():
                missing.append("PATRON_TWILIO_AUTH_TOKEN")
            if not (t.from_number or t.messaging_service_sid):
                missing.append("PATRON_TWILIO_FROM_NUMBER or PATRON_TWILIO_MESSAGING_SERVICE_SID")
        elif self.sms_provider == "aliyun":
            a = self.aliyun_sms
            if not a.access_key_id:
                missing.append("PATRON_ALIYUN_SMS_ACCESS_KEY_ID")
            if not a.access_key_secret.get_secret_value():
                missing.append("PATRON_ALIYUN_SMS_ACCESS_KEY_SECRET")
            if not a.sign_name:
                missing.append("PATRON_ALIYUN_SMS_SIGN_NAME")
        elif self.sms_provider == "gateway" and not self.sms_gateway.url:
            missing.append("PATRON_SMS_GATEWAY_URL")
        if self.email_provider == "smtp":
            if not self.smtp.host:
                missing.append("PATRON_SMTP_HOST")
            if not self.smtp.from_address:
                missing.append("PATRON_SMTP_FROM_ADDRESS")
            if self.smtp.username and self.smtp.password is None:
                missing.append("PATRON_SMTP_PASSWORD")
        if missing:
            raise ValueError("the chosen message providers need: " + ", ".join(missing))
        return self

