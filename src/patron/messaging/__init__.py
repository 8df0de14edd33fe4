"""Messaging: how patron reaches members and integrators.

``channels`` sends one rendered message through one provider (SMTP e-mail; SMS through
Twilio, Aliyun or a generic gateway; signed webhooks; a log file in development) and says
whether it went, or whether a retry can help. ``templates`` renders what members read, in
their language, with the brand signature and opt-out rules applied. ``sms`` counts segments.
``config`` reads the providers' settings. The outbox worker, consent checks, quiet hours and
frequency caps build on these.
"""
