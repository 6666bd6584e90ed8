"""The chunked history window (agent/history.py): between drops each prompt is the previous prompt plus its reply
and the new screenshot, so the engine reuses all of it; it shows as many screenshots on average as the trained
sliding window, which stays the default."""

from __future__ import annotations

import pytest

from agent.history import History
from agent.loop import AgentConfig
from agent.parsing import parse_response
from serving import picture

REPLY = 'Action: Click.\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", ' \
        '"coordinate": [1, 2]}}\n</tool_call>'


def images(messages) -> int:
    return sum(1 for m in messages for p in m["content"] if isinstance(p, dict) and p.get("type") == "image")


def test_chunked_window_keeps_the_prefix_between_drops():
    sliding, chunked = History("do it"), History("do it", window="chunked")
    assert AgentConfig().history_window == "sliding"
    shown = {"sliding": [], "chunked": []}
    previous = None
    for k in range(17):
        shot = picture(k, 40, 60)
        for h in (sliding, chunked):
            msgs = h.messages(shot)
            shown[h.window].append(images(msgs) - 1)
            if h is chunked:
                if previous is not None and shown["chunked"][-1] == shown["chunked"][-2] + 1:
                    # the previous prompt, its reply, then the new screenshot: a pure extension
                    assert msgs[:len(previous)] == previous
                    assert msgs[len(previous)]["role"] == "assistant"
                previous = msgs + []
            h.add(shot, parse_response(REPLY))
    assert shown["sliding"] == [0, 1, 2, 3] + [4] * 13
    assert shown["chunked"] == [0, 1, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 2, 3, 4, 5, 6]
    assert sum(shown["chunked"][7:]) / 10 == sum(shown["sliding"][7:]) / 10 == 4


def test_unknown_window_is_an_error():
    with pytest.raises(ValueError, match="sliding or chunked"):
        AgentConfig(history_window="random")
