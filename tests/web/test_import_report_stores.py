"""Import reports name every store a file's rows went to (issue #21, item 14), and a store's manager finds the
imports that wrote only to their store, with the rule that hides multi-store files said on the page."""

from __future__ import annotations

import re
from unittest import mock

from flask import g
from sqlalchemy import select

from portal.models import ImportRun
from tests.web.test_store_isolation_imports import LINES_HEADER, build_chain, page, sign_in


def _cli_import(runner, tmp_path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(LINES_HEADER + body)
    with mock.patch("portal.services.importer.runs._rescore"):
        result = runner.invoke(args=["import", "transactions", str(path), "--store", "Downtown"])
    assert result.exit_code == 0, result.output


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_report_names_the_stores_the_rows_went_to_not_the_default_store(app, db, runner, tmp_path):
    world = build_chain(db, with_demo_import=False)
    _cli_import(
        runner,
        tmp_path,
        "harbor_uptown.csv",
        "H00001,X1,2025-05-01,P1,Mug,1,5,5,,Harbor\nU00001,X2,2025-05-02,P2,Cup,2,4,8,,Uptown\n",
    )
    run = db.session.scalar(select(ImportRun).order_by(ImportRun.id.desc()))
    assert run.status == "done" and run.store_id == world["stores"]["Downtown"].id  # the form's default store
    admin = sign_in(app, world["users"]["admin"])
    detail = _text(page(admin, f"/imports/{run.id}"))
    assert "transactions into Harbor and Uptown" in detail
    assert "into Downtown" not in detail
    assert "Stores written to Harbor, Uptown" in detail
    assert "Rows without a store column went to Downtown" in detail
    history = page(admin, "/imports")
    row = history[history.index("harbor_uptown.csv") :]
    assert "Harbor, Uptown" in row[: row.index("</tr>")]
    assert 'id="import-store-rule"' not in history  # admins see every run: no rule to explain


def test_store_manager_history_shows_their_store_only_imports_and_says_why_others_are_missing(
    app, db, runner, tmp_path
):
    world = build_chain(db, with_demo_import=False)
    _cli_import(runner, tmp_path, "harbor_only.csv", "H00001,X1,2025-05-01,P1,Mug,1,5,5,,Harbor\n")
    _cli_import(
        runner,
        tmp_path,
        "two_stores.csv",
        "H00001,X3,2025-05-03,P1,Mug,1,5,5,,Harbor\nU00001,X4,2025-05-04,P2,Cup,2,4,8,,Uptown\n",
    )
    harbor_only, two_stores = db.session.scalars(select(ImportRun).order_by(ImportRun.id)).all()
    client = sign_in(app, world["users"]["Harbor"])
    history = page(client, "/imports")
    assert "harbor_only.csv" in history and "two_stores.csv" not in history
    row = history[history.index("harbor_only.csv") :]
    assert '<td data-label="Stores" class="import-stores">Harbor</td>' in row[: row.index("</tr>")]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d C[SD]T", row)  # the time in Harbor's zone, labelled
    rule = re.search(r'id="import-store-rule">([^<]+)<', history).group(1)
    assert "rows all went to your store" in rule and "several stores" in rule
    detail = _text(page(client, f"/imports/{harbor_only.id}"))
    assert "transactions into Harbor" in detail and "Downtown ·" not in detail
    vars(g).clear()
    assert client.get(f"/imports/{two_stores.id}").status_code == 404
