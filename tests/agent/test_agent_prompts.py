"""System prompts byte for byte against golden files, and the message layout built from history.

Golden files (tests/agent/golden/) are not produced by agent.prompts:
* system_qwen.txt: the rendered cookbook prompt copied verbatim from shared/docs/computer-use.md §1.4
  (3886 characters);
* system_osworld.txt, user_osworld*.txt: transcribed from OSWorld's mm_agents/qwen3vl_agent.py
  (tools_def dict through json.dumps, the "# Response format" block, the instruction f-string).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from agent import prompts
from agent.history import History
from agent.parsing import parse_response

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> str:
    return (GOLDEN / name).read_text(encoding="utf-8")


def test_qwen_system_prompt_is_the_cookbook_text_byte_for_byte():
    expected = golden("system_qwen.txt")
    assert len(expected) == 3886
    assert prompts.system_prompt("qwen") == expected
    # sent as the cookbook's two text parts; the chat template concatenates them
    msg = prompts.system_message("qwen")
    assert msg["role"] == "system"
    assert [c["text"] for c in msg["content"]] == ["You are a helpful assistant.", expected[len("You are a helpful assistant."):]]
    assert msg["content"][1]["text"].startswith("\n\n# Tools\n\n")


def test_osworld_system_prompt_matches_osworld_byte_for_byte():
    expected = golden("system_osworld.txt")
    assert prompts.system_prompt("osworld") == expected
    assert not expected.startswith("You are a helpful assistant.")
    assert len(prompts.system_message("osworld")["content"]) == 1
    # the facts of shared/docs/computer-use.md §1.5, read from the golden text
    tool = json.loads(expected.split("<tools>\n")[1].split("\n</tools>")[0])
    fn = tool["function"]
    assert fn["name_for_human"] == "computer_use"
    assert fn["args_format"] == "Format the arguments as a JSON object."
    assert "triple_click" not in fn["parameters"]["properties"]["action"]["enum"]
    assert "answer" not in fn["parameters"]["properties"]["action"]["enum"]
    assert fn["parameters"]["properties"]["coordinate"]["description"] == "The x,y coordinates for mouse actions."
    assert "* The screen's resolution is 1000x1000." in fn["description"]


def test_qwen_tool_schema_lists_all_fourteen_actions():
    tool = json.loads(golden("system_qwen.txt").split("<tools>\n")[1].split("\n</tools>")[0])
    from agent.actions import ACTION_NAMES

    assert tool["function"]["parameters"]["properties"]["action"]["enum"] == list(ACTION_NAMES)


def test_osworld_user_text_golden():
    instr = "Book a flight from Berlin to Lisbon on 12 March"
    assert prompts.user_text("osworld", instr, []) == golden("user_osworld_first.txt")
    assert prompts.user_text("osworld", instr, ["Click the From field.", "Type Berlin."]) == golden("user_osworld.txt")


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown prompt profile 'mobile'"):
        prompts.system_prompt("mobile")


def _shot(i: int) -> Image.Image:
    return Image.new("RGB", (64, 40), (i * 10 % 256, 0, 0))


def _reply(i: int) -> str:
    return (f"<think>\n\n</think>\n\nAction: step {i}\n<tool_call>\n"
            f'{{"name": "computer_use", "arguments": {{"action": "left_click", "coordinate": [{i}, {i}]}}}}\n</tool_call>')


@pytest.mark.parametrize("profile", ["qwen", "osworld"])
def test_history_window_replays_last_four_screenshots_and_lists_older_steps(profile):
    h = History("Do the thing", profile=profile, history_images=4)
    for i in range(6):
        h.add(_shot(i), parse_response(_reply(i)))
    current = _shot(99)
    msgs = h.messages(current)
    roles = [m["role"] for m in msgs]
    assert roles == ["system"] + ["user", "assistant"] * 4 + ["user"]
    images = [c["image"] for m in msgs for c in m["content"] if c["type"] == "image"]
    assert images == [_shot(2), _shot(3), _shot(4), _shot(5), current]  # 4 history + current, oldest first
    first_text = [c["text"] for c in msgs[1]["content"] if c["type"] == "text"][0]
    assert "Step 1: step 0\nStep 2: step 1" in first_text  # the two steps outside the window, as Action lines
    if profile == "osworld":
        assert first_text == prompts.user_text("osworld", "Do the thing", ["step 0", "step 1"])
    else:
        assert first_text.startswith("Do the thing\n\nPrevious actions:\n")
    # think blocks never go back into history (QwenLM/Qwen3-VL#1509)
    for m in msgs:
        if m["role"] == "assistant":
            assert "<think>" not in m["content"][0]["text"] and "</think>" not in m["content"][0]["text"]
            assert m["content"][0]["text"].startswith("Action: step")


def test_first_step_is_image_then_instruction_and_failed_replies_follow():
    h = History("Open settings", profile="qwen")
    msgs = h.messages(_shot(1), failed_replies=[("garbage", "Your last reply could not be executed: x")])
    assert msgs[0] == prompts.system_message("qwen")
    assert [c["type"] for c in msgs[1]["content"]] == ["image", "text"]
    assert msgs[1]["content"][1]["text"] == "Open settings"
    assert msgs[2] == {"role": "assistant", "content": [{"type": "text", "text": "garbage"}]}
    assert msgs[3]["role"] == "user" and msgs[3]["content"][0]["text"].startswith("Your last reply")


def test_history_without_action_line_uses_osworld_fallback():
    h = History("x", profile="osworld", history_images=0)
    h.add(_shot(0), parse_response('<tool_call>\n{"name": "computer_use", "arguments": '
                                   '{"action": "double_click", "coordinate": [1, 2]}}\n</tool_call>'))
    msgs = h.messages(_shot(1))
    assert len(msgs) == 2  # no screenshots replayed with history_images=0
    assert "Step 1: Performing doubleClick action" in msgs[1]["content"][1]["text"]


def test_qwen_prompt_equals_the_chat_template_rendering_of_tools():
    """Sending our system message renders the same prompt as passing tools=[computer_use] to the Qwen3-VL
    chat template (what an OpenAI-compatible server does with `tools`)."""
    from tiny_tokenizer import build_tokenizer

    tok = build_tokenizer()
    user = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    via_tools = tok.apply_chat_template(
        [{"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]}, user],
        tools=[{"type": "function", "function": prompts.computer_use_function()}], tokenize=False,
        add_generation_prompt=True)
    ours = tok.apply_chat_template([prompts.system_message("qwen"), user], tokenize=False,
                                   add_generation_prompt=True)
    assert ours == via_tools
    assert ours.startswith("<|im_start|>system\n" + golden("system_qwen.txt") + "<|im_end|>\n")
