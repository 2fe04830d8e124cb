"""Build one mail (subject, plain-text and HTML parts, unsubscribe link) from templates/mail/email/."""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, url_for

from portal.models import User
from portal.services.mail import links, preferences


@dataclass
class Built:
    subject: str
    text: str
    html: str
    unsubscribe_url: str


def build(user: User, kind: str, template: str, subject: str, **context) -> Built:
    """Render ``mail/email/<template>.txt`` and ``.html`` for ``user`` with absolute links (PORTAL_URL).

    Every mail carries the signed unsubscribe link for its kind and a link to the preferences page;
    no images and no tracking pixels.
    """
    with links.external():
        unsubscribe_url = url_for("mail.unsubscribe", token=preferences.token(user.id, kind), _external=True)
        context = {
            **context,
            "user": user,
            "kind": kind,
            "kind_label": preferences.LABELS[kind],
            "subject": subject,
            "unsubscribe_url": unsubscribe_url,
            "preferences_url": url_for("mail.preferences", _external=True),
            "portal_url": url_for("dashboard.index", _external=True),
        }
        text = render_template(f"mail/email/{template}.txt", **context)
        html = render_template(f"mail/email/{template}.html", **context)
    return Built(subject, text, html, unsubscribe_url)
