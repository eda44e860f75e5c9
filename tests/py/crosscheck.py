"""Drives the official FluidTalk Python client for tests/it/python_crosscheck.rs.

  crosscheck.py calls BASE_URL IMAGE_PATH  -- the same calls the Rust test makes, against a
                                             recording server; prints nothing of interest.
  crosscheck.py e2e BASE_URL                -- a session against `fluidtalk-runner sim`;
                                             prints one JSON object with what came back.
"""
import json
import sys

import fluidtalk
from fluidtalk import FluidTalk, FluidTalkError

KEY = "ft_sk_crosscheck_0b7e"


def calls(base_url, image_path):
    ft = FluidTalk(api_key=KEY, base_url=base_url + "/", own_username="@default")
    ft.ai_opener(target="@lead one", own_username="@me", image_path=image_path)
    ft.ai_opener(target="@lead two", image_url="https://cdn.example/p.jpg")
    ft.follow_up(target="@lead one")
    ft.event_trigger(
        target="@lead",
        event_type="story_reaction",
        context={"reaction": "🔥", "n": 1.5, "big": 1e16, "nested": {"a": [1, None, True]}, "q": "a\"b/ü"},
        image_url="https://cdn.example/s.jpg",
    )
    ft.inbound_chat(target="@lead", message="hey, saw your post! ünïcode & more *~", own_username="")
    ft.upload_image(path=image_path)
    ft.upload_image(data=b"\x89PNG raw", filename="raw.png")


def e2e(base_url):
    ft = FluidTalk(api_key=KEY, base_url=base_url, own_username="@me")
    out = {"version": fluidtalk.__version__}
    first = ft.ai_opener(target="@py")
    out["opener"] = {"message": first.message, "session_id": first.session_id, "continued": first.continued}
    again = ft.ai_opener(target="@py")
    out["opener_again"] = {"message": again.message, "continued": again.continued,
                           "continued_reason": again.continued_reason}
    out["follow_up"] = ft.follow_up(target="@py").message
    ev = ft.event_trigger(target="@py", event_type="story_reaction", context={"reaction": "🔥"})
    out["event"] = {"message": ev.message, "continued": ev.continued}
    chat = ft.inbound_chat(target="@py", message="hi")
    out["chat_replies"] = chat.replies
    out["upload_url"] = ft.upload_image(data=b"img", filename="x.jpg").url
    out["ignored"] = ft.ai_opener(target="@dup").ignored
    for name, call in [
        ("no_conversation", lambda: ft.follow_up(target="@never")),
        ("out_of_tokens", lambda: ft.ai_opener(target="@broke")),
        ("sealed", lambda: (ft.follow_up(target="@py"), ft.follow_up(target="@py"))),
    ]:
        try:
            call()
            out[name] = None
        except FluidTalkError as e:
            out[name] = {"status": e.status, "detail": e.detail}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "calls":
        calls(sys.argv[2], sys.argv[3])
    else:
        e2e(sys.argv[2])
