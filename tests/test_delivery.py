"""Outgoing messages: what a direct message keeps and drops, and when a video is a link."""

from pathlib import Path

from cogs.delivery import DM_UPLOAD_LIMIT, Outgoing, post_nonce

LINK = "https://cdn.example/outputs/1.mp4"


def video_file(folder: Path, size: int) -> Path:
    path = folder / "video.mp4"
    with path.open("wb") as file:
        file.truncate(size)  # sparse: no need to write 10 MB for a size
    return path


def test_direct_copy_keeps_a_small_video_and_drops_the_buttons(tmp_path: Path) -> None:
    path = video_file(tmp_path, 100)
    outgoing = Outgoing("<@1> your video", video=path, size=100, filename="v.mp4", link=LINK)
    direct = outgoing.direct(channel_id=42)
    assert direct.video == outgoing.video and direct.view is None
    assert direct.text.startswith("(I couldn't post in <#42>, so here it is directly.)")
    kwargs = direct.kwargs(member_id=1)
    file = kwargs["file"]
    assert file.filename == "v.mp4" and "view" not in kwargs
    assert file.fp.read() == b"\0" * 100  # attached from the file on disk
    file.close()


def test_a_video_over_the_limit_is_sent_as_its_link(tmp_path: Path) -> None:
    size = DM_UPLOAD_LIMIT + 1
    path = video_file(tmp_path, size)
    outgoing = Outgoing("text", video=path, size=size, filename="v.mp4", link=LINK)
    direct = outgoing.direct(channel_id=42).within(DM_UPLOAD_LIMIT)
    assert direct.video is None
    assert direct.text.endswith(f"(the link expires): {LINK}") and "10 MB" in direct.text
    assert "is 10.0 MB, over the 10 MB upload limit" in direct.text
    assert "file" not in direct.kwargs(member_id=1)
    assert outgoing.within(DM_UPLOAD_LIMIT + 1) is outgoing  # within the limit: unchanged


def test_a_video_not_downloaded_is_always_its_link() -> None:
    """Over the first route's limit the runner does not download it: every route links it."""
    linked = Outgoing("text", video=None, size=30 * 2**20, filename="v.mp4", link=LINK)
    over = linked.within(DM_UPLOAD_LIMIT)
    note = "The video is over the 10 MB upload limit here. Download it from WaveSpeed soon"
    assert over.text == f"text\n{note} (the link expires): {LINK}"
    under = linked.within(50 * 2**20)  # a later route that could have taken it
    assert under.text.endswith(LINK) and "could not be attached here" in under.text
    assert "file" not in over.kwargs(member_id=1) and "file" not in under.kwargs(member_id=1)


def test_a_message_without_a_video_is_left_alone() -> None:
    notice = Outgoing("the job failed")
    assert notice.within(0) is notice


def test_the_post_nonce_is_stable_and_fits_discord() -> None:
    assert post_nonce(123) == post_nonce(123) != post_nonce(124)
    assert len(post_nonce(2**63 - 1)) <= 25


def test_mentions_only_the_member() -> None:
    mentions = Outgoing("hi <@2> <@&3> @everyone").kwargs(member_id=2)["allowed_mentions"]
    assert mentions.everyone is False and mentions.roles is False
    assert [user.id for user in mentions.users] == [2]
