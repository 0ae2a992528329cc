"""Logging, configured once by each process's entry point.

`text` for people at a terminal, `json` (one object per line) for production. Every record
carries the request id of the RPC it belongs to. A last-resort filter masks anything shaped like
a credential, so a mistake elsewhere cannot leak a token into the log.
"""
from __future__ import annotations

import contextvars
import json
import logging
import re
import sys

from carpet_common import tracing

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(x-admin-token['\"]?\s*[:=,]\s*['\"]?)[^'\"\s,)]+"),
    re.compile(r"(?i)((?:api[_-]?key|secret|password|token)['\"]?\s*[:=]\s*['\"]?)[^'\"\s,)]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),  # a JWT
)


def mask_credentials(text: str) -> str:
    for pattern in _CREDENTIAL_PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class _ContextFilter(logging.Filter):
    """Adds the request id and the process's name (`credit_service`, …): the three processes
    of `make run` write to one terminal."""

    def __init__(self, process: str):
        super().__init__()
        self._process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.process_name = self._process
        return True


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_credentials(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "process": getattr(record, "process_name", "-"),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        ids = tracing.current_ids()
        if ids is not None:  # tracing on, inside a traced call: the log line joins its trace
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask_credentials(json.dumps(entry, ensure_ascii=False))


def configure_logging(fmt: str = "text", level: int = logging.INFO, *,
                      process: str = "-") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter(process))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_RedactingFormatter(
            "%(asctime)s %(process_name)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
