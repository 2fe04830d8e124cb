"""gunicorn's access log with the same masking as the app's own log (``logger_class`` in gunicorn.conf.py).

A custom ``access_log_format`` cannot mask: the request line, query string and referrer reach the
log as they came, phone numbers and e-mails of a search included. This logger masks those atoms.
"""

from __future__ import annotations

from gunicorn.glogging import Logger

from portal.logs import mask_url

# Atoms that carry a URL: request line, path, query string, referrer (and their header/environ forms).
URL_ATOMS = {
    "r",
    "U",
    "q",
    "f",
    "{referer}i",
    "{raw_uri}e",
    "{path_info}e",
    "{query_string}e",
    "{request_uri}e",
    "{http_referer}e",
}


class MaskingAccessLogger(Logger):
    """gunicorn Logger whose access lines hide phones, e-mails and secrets in URLs."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in URL_ATOMS & atoms.keys():
            if isinstance(atoms[key], str):
                atoms[key] = mask_url(atoms[key])
        return atoms
