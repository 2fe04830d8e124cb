"""CLI contracts: init-db, users create, exit statuses."""

from sqlalchemy import select

from portal.models import User


def test_users_create_from_stdin(runner, db, make_store):
    make_store("Downtown")
    result = runner.invoke(
        args=["users", "create", "Ann@Example.com", "--role", "manager", "--store", "Downtown", "--password-stdin"],
        input="a-long-password\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User).where(User.email == "ann@example.com"))
    assert user.role == "manager" and user.check_password("a-long-password")


def test_users_create_refused_exit_1(runner, make_user):
    make_user("admin", email="dup@example.com")
    result = runner.invoke(
        args=["users", "create", "dup@example.com", "--role", "admin", "--password-stdin"], input="a-long-password\n"
    )
    assert result.exit_code == 1 and "already exists" in result.output


def test_users_create_usage_error_exit_2(runner):
    result = runner.invoke(args=["users", "create", "x@example.com", "--role", "boss"])
    assert result.exit_code == 2


def test_short_password_refused(runner):
    result = runner.invoke(
        args=["users", "create", "s@example.com", "--role", "admin", "--password-stdin"], input="short\n"
    )
    assert result.exit_code == 1 and "at least 10" in result.output
