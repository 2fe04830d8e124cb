"""``flask export``: the same file the list page would give, audited as a CLI export."""

from __future__ import annotations

import os
import tempfile

import click
from flask.cli import with_appcontext

from portal.cli import refuse
from portal.services.lists import exports, registry


@click.command("export")
@click.argument("list_name", metavar="LIST", type=click.Choice(list(registry.LISTS)))
@click.option("--filter", "filter_text", default="", help="The list page's query string, e.g. 'band=High&tier=Gold'.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The file to write.")
@click.option("--columns", default=None, help="Comma-separated columns (default: all, in header order).")
@click.option("--include-opted-out", is_flag=True, help="Keep customers who opted out of SMS.")
@with_appcontext
def export_command(list_name, filter_text, fmt, output, columns, include_opted_out):
    """Export a list (all stores) to CSV or XLSX with the list page's filters."""
    params = registry.parse_filter(filter_text)
    for key in ("format", "columns", "include_opted_out", "after"):
        params.poplist(key)
    if columns:
        params.setlist("columns", [columns])
    if include_opted_out:
        params["include_opted_out"] = "1"
    try:
        export = exports.prepare(list_name, params, None)
    except registry.ExportError as exc:
        refuse(str(exc))
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        refuse(f"cannot write {output}: the folder {directory} does not exist")
    # Write beside the target and rename, so a refused export never leaves half a file behind.
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix="." + fmt, dir=directory)
    try:
        if fmt == "csv":
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                rows = _write_csv(export, fh)
        else:
            with os.fdopen(fd, "wb") as fh:
                rows = exports.write_xlsx(export, fh)
        os.replace(tmp, output)
    except registry.ExportError as exc:
        os.unlink(tmp)
        refuse(str(exc))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    exports.record_export(export, fmt, rows, source="cli", user_email="cli")
    click.echo(f"exported {rows} rows of {list_name} to {output}")


def _write_csv(export: exports.Export, fh) -> int:
    counted = {"rows": 0}

    def finish(rows: int, completed: bool) -> None:
        counted["rows"] = rows

    for chunk in exports.csv_chunks(export, finish):
        fh.write(chunk)
    return counted["rows"]


commands = [export_command]
