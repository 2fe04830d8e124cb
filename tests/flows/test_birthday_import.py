"""The customers file's optional ``birthday`` column: stored on the customer, a bad value is a warning."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from portal.models import Customer, ImportProblem


def test_customers_file_birthday_is_stored_and_a_bad_one_only_warns(runner, db, make_store, tmp_path):
    make_store("Downtown")
    path = tmp_path / "people.csv"
    path.write_text(
        "customer_id,name,phone,store,sms_consent,sms_consent_date,birthday\n"
        "C1,Ann Lee,202-555-0142,Downtown,yes,2025-01-10,1990-05-17\n"
        "C2,Bob Ray,202-555-0143,Downtown,yes,2025-01-10,not a date\n"
        "C3,Cat Kim,202-555-0144,Downtown,yes,2025-01-10,\n"
    )
    result = runner.invoke(args=["import", "customers", str(path)])
    assert result.exit_code == 0, result.output
    got = {c.external_id: c for c in db.session.scalars(select(Customer))}
    assert got["C1"].birthday == date(1990, 5, 17)
    assert got["C2"].birthday is None and got["C2"].sms_consent == "opted_in"  # kept, without the birthday
    assert got["C3"].birthday is None
    [problem] = db.session.scalars(select(ImportProblem).where(ImportProblem.column == "birthday")).all()
    assert problem.severity == "warning" and "birthday left out" in problem.reason
    # A later file with a birthday for a known customer fills it in.
    path.write_text("customer_id,birthday\nC3,2001-02-03\n")
    assert runner.invoke(args=["import", "customers", str(path)]).exit_code == 0
    db.session.expire_all()
    assert db.session.get(Customer, got["C3"].id).birthday == date(2001, 2, 3)
