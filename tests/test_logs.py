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


def test_interaction_tokens_in_urls_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("wanbot.test.redact")
    caplog.handler.addFilter(RedactSecrets([]))
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5"
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.debug(
            "PATCH %s", f"https://discord.com/api/v10/webhooks/42/{token}/messages/@original"
        )
        logger.debug("POST https://discord.com/api/v10/webhooks/42/%s?wait=true", token)
        logger.debug("POST /api/v10/interactions/7/%s/callback has returned 204", token)
    assert token not in caplog.text
    assert [r.getMessage() for r in caplog.records] == [
        f"PATCH https://discord.com/api/v10/webhooks/42/{MASK}/messages/@original",
        f"POST https://discord.com/api/v10/webhooks/42/{MASK}?wait=true",
        f"POST /api/v10/interactions/7/{MASK}/callback has returned 204",
    ]
