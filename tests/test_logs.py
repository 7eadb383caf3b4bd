"""Secrets are masked in every log line, whatever logged them."""

import logging

import pytest

from bot.logs import MASK, RedactSecrets

SECRET = "MTIz.discord-token.secret-part"


def test_secrets_are_masked_in_messages_and_arguments(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("wanbot.test.redact")
    caplog.handler.addFilter(RedactSecrets([SECRET, "ab"]))  # too-short values are not masked
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("connecting with %s", SECRET)
        logger.warning(f"header Authorization: Bot {SECRET}")
        logger.info("about %s", "nothing secret")
    assert SECRET not in caplog.text
    assert [r.getMessage() for r in caplog.records] == [
        f"connecting with {MASK}",
        f"header Authorization: Bot {MASK}",
        "about nothing secret",
    ]
