"""Flask extensions, created once and bound to the app in ``create_app`` (``init_app``)."""

from flask_login import LoginManager
from flask_mailman import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base so models use SQLAlchemy 2 typed ``Mapped[...]`` columns."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
mail = Mail()  # settings only: portal/services/mail/transport.py opens the SMTP connections
