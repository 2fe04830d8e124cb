"""One thread for BLAS/OpenMP inside a block, at the cost of a dictionary look-up.

``threadpoolctl.threadpool_limits`` scans every loaded shared library each time it is entered (about
8 ms here), which was a sixth of an incremental rescore of one customer. A ``ThreadpoolController``
scans once and then only sets the limits; it is created on first use, when numpy, scipy and
scikit-learn (and their BLAS and OpenMP libraries) are loaded, and kept for the process (the
libraries do not change while it runs).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController

_controller: list[ThreadpoolController] = []  # process-wide: the loaded libraries are the process's


def single_threaded(user_api: str | None = None) -> AbstractContextManager:
    """``with single_threaded(): ...`` — like ``threadpool_limits(limits=1, user_api=user_api)``."""
    if not _controller:
        import sklearn.ensemble  # noqa: F401  (load scikit-learn's OpenMP runtime before the scan)

        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=1, user_api=user_api)
