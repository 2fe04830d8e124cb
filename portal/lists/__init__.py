"""Lists area: saved segments, the export history and the generic export endpoint (``lists`` blueprint)."""
