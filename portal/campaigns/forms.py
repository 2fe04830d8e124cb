"""Forms of the campaign pages (each POST carries its CSRF token)."""
from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """A confirmed button (send, cancel): nothing to fill in but the CSRF token."""
