"""Logging set-up with a last line of defence: secrets are masked in every record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

MASK = "[redacted]"
# An interaction's token in a webhook or callback URL (discord.py logs these at DEBUG): each
# interaction has its own, valid 15 minutes, so it is masked by where it stands.
_INTERACTION_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?#\s'\"]+")


class RedactSecrets(logging.Filter):
    """Replace any secret value that reaches a log record with a mask, and any interaction
    token in a URL."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _INTERACTION_TOKEN.sub(rf"\g<1>{MASK}", message)
        for secret in self._secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """Log to stderr at `level`, masking `secrets` in every message."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
