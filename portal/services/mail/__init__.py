"""E-mail for the people who run the store: alerts when something needs them, and a weekly digest.

preferences  who gets which mail (defaults, the preferences page, signed unsubscribe links)
events       what happened (MailEvent rows, once per event): the rescore's risk changes and band moves,
             failed imports and training runs, paused campaigns and automations, opt-out spikes
alerts       the ``mail.alerts`` job: events → one mail per user who wants it
digest       the ``mail.digest`` job: a user's week, on the weekday and hour they chose (store time)
outbox       the mail rows: unique per (user, kind, key), claimed before sending, never re-sent blindly
transport    the only door to SMTP (Flask-Mailman); without MAIL_SERVER mail is logged, not sent
clock        queues both jobs once an hour (one process claims each hour); ``flask mail send-due`` for cron
Design and rules: docs/mail.md.
"""
