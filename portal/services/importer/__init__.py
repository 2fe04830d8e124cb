"""Importing purchase, stock and customer files: the one service the pages, the CLI and the jobs call.

``runs`` takes a file from upload to merged rows (stage in TEMP tables, merge in one transaction);
``history`` lists runs, streams their problems and undoes them; ``merge`` and ``staging`` hold
the SQL. Reading and validating the file itself is ``preprocessing.columns`` (pure pandas).
"""

from portal.services.importer.history import (
    UndoPlan,
    UndoRefused,
    discard,
    first_problems,
    get_for_user,
    job_of,
    problems_csv,
    refuse,
    runs_for,
    store_rule,
    undo,
    undo_plan,
    written_stores,
)
from portal.services.importer.runs import (
    CHUNK_ROWS,
    ImportRefused,
    Inspection,
    create_run,
    default_store,
    execute,
    file_check,
    file_sha256,
    find_store,
    inspect,
    missing_fields,
    run_job,
    save_upload,
    set_mapping,
    stale_refusal,
    start,
    summary,
)

__all__ = [
    "CHUNK_ROWS",
    "ImportRefused",
    "Inspection",
    "UndoPlan",
    "UndoRefused",
    "create_run",
    "default_store",
    "discard",
    "execute",
    "file_check",
    "file_sha256",
    "find_store",
    "first_problems",
    "get_for_user",
    "inspect",
    "job_of",
    "missing_fields",
    "problems_csv",
    "refuse",
    "run_job",
    "runs_for",
    "store_rule",
    "save_upload",
    "set_mapping",
    "stale_refusal",
    "start",
    "summary",
    "undo",
    "undo_plan",
    "written_stores",
]
