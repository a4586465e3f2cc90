"""JSON log lines on standard error for the Celery worker and its dispatcher."""

from __future__ import annotations

import logging
import sys

import orjson

__all__ = ["configure_json_logging"]


class _Json(logging.Formatter):
    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **{k: v for k, v in vars(record).items() if k not in self._standard},
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_json_logging() -> None:
    """One JSON object per line for the ``bulkops`` loggers (operation and chunk named)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json())
    root = logging.getLogger("bulkops")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
