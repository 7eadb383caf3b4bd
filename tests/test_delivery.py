"""Outgoing messages: what a direct message keeps and drops."""

from cogs.delivery import DM_UPLOAD_LIMIT, Outgoing, post_nonce

LINK = "https://cdn.example/outputs/1.mp4"


def test_direct_copy_keeps_a_small_video_and_drops_the_buttons() -> None:
    outgoing = Outgoing("<@1> your video", video=b"\0" * 100, filename="v.mp4", link=LINK)
    direct = outgoing.direct(channel_id=42)
    assert direct.video == outgoing.video and direct.view is None
    assert direct.text.startswith("(I couldn't post in <#42>, so here it is directly.)")
    kwargs = direct.kwargs(member_id=1)
    assert kwargs["file"].filename == "v.mp4" and "view" not in kwargs


def test_a_video_over_the_limit_is_sent_as_its_link() -> None:
    outgoing = Outgoing("text", video=b"\0" * (DM_UPLOAD_LIMIT + 1), filename="v.mp4", link=LINK)
    direct = outgoing.direct(channel_id=42).within(DM_UPLOAD_LIMIT)
    assert direct.video is None
    assert direct.text.endswith(f"(the link expires): {LINK}") and "10 MB" in direct.text
    assert "file" not in direct.kwargs(member_id=1)
    assert outgoing.within(DM_UPLOAD_LIMIT + 1) is outgoing  # within the limit: unchanged


def test_the_post_nonce_is_stable_and_fits_discord() -> None:
    assert post_nonce(123) == post_nonce(123) != post_nonce(124)
    assert len(post_nonce(2**63 - 1)) <= 25


def test_mentions_only_the_member() -> None:
    mentions = Outgoing("hi <@2> <@&3> @everyone").kwargs(member_id=2)["allowed_mentions"]
    assert mentions.everyone is False and mentions.roles is False
    assert [user.id for user in mentions.users] == [2]
