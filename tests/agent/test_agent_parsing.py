"""Parser: table tests of real-looking replies, and hypothesis fuzzing (10,000+ generated strings)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.actions import ACTION_NAMES, Action
from agent.parsing import ParsedResponse, parse_response, strip_think


def call(args: dict) -> str:
    return "<tool_call>\n" + json.dumps({"name": "computer_use", "arguments": args}) + "\n</tool_call>"


# (reply, expected action fields or None, expected action line)
TABLE = [
    # cookbook / mobile notebook output shape
    ('Thought: To search for Musk in X, I need to click on the search bar at the top of the screen.\n'
     'Action: "I tapped on the search bar to begin searching for Musk."\n'
     '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [447, 81]}}\n</tool_call>',
     {"action": "left_click", "coordinate": (447, 81)}, '"I tapped on the search bar to begin searching for Musk."'),
    # empty think block emitted with thinking disabled (QwenLM/Qwen3-VL#1509)
    ("<think>\n\n</think>\n\nAction: Open the File menu.\n" + call({"action": "left_click", "coordinate": [12, 30]}),
     {"action": "left_click", "coordinate": (12, 30)}, "Open the File menu."),
    # thinking model: reasoning closed by </think> (opened by the generation prompt)
    ("The button is at the top right, maybe [900, 50]?\n</think>\n\n" + call({"action": "right_click", "coordinate": [910, 48]}),
     {"action": "right_click", "coordinate": (910, 48)}, None),
    # missing </tool_call> (truncated generation)
    ('Action: Type the city.\n<tool_call>\n{"name": "computer_use", "arguments": {"action": "type", "text": "Berlin"}}',
     {"action": "type", "text": "Berlin"}, "Type the city."),
    # missing closing brace (vllm#22885)
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}\n</tool_call>',
     {"action": "terminate", "status": "success"}, None),
    # json5: single quotes, trailing comma
    ("<tool_call>\n{'name': 'computer_use', 'arguments': {'action': 'scroll', 'pixels': -5,},}\n</tool_call>",
     {"action": "scroll", "pixels": -5.0}, None),
    # OSWorld's malformed key arrays
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "key", "keys": ["keys=[\'ctrl\'", "\'c\']"]}}\n</tool_call>',
     {"action": "key", "keys": ["ctrl", "c"]}, None),
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "key", "keys": "[\'ctrl\', \'alt\', \'t\']"}}\n</tool_call>',
     {"action": "key", "keys": ["ctrl", "alt", "t"]}, None),
    (call({"action": "key", "keys": "ctrl+shift+t"}), {"action": "key", "keys": ["ctrl", "shift", "t"]}, None),
    # a bare JSON line without tags (OSWorld accepts it)
    ('Action: Press enter.\n{"name": "computer_use", "arguments": {"action": "key", "keys": ["enter"]}}',
     {"action": "key", "keys": ["enter"]}, "Press enter."),
    # coordinate written as a string / stringly numbers
    (call({"action": "mouse_move", "coordinate": "[100, 200]"}), {"action": "mouse_move", "coordinate": (100, 200)}, None),
    (call({"action": "left_click_drag", "coordinate": ["300", "400"]}),
     {"action": "left_click_drag", "coordinate": (300, 400)}, None),
    (call({"action": "wait", "time": "2"}), {"action": "wait", "time": 2.0}, None),
    (call({"action": "answer", "text": "42"}), {"action": "answer", "text": "42"}, None),
    (call({"action": "hscroll", "pixels": 3, "coordinate": [500, 500]}),
     {"action": "hscroll", "pixels": 3.0, "coordinate": (500, 500)}, None),
    (call({"action": "triple_click", "coordinate": [1, 999]}), {"action": "triple_click", "coordinate": (1, 999)}, None),
    (call({"action": "middle_click"}), {"action": "middle_click"}, None),
    # arguments as a JSON string (OpenAI tool_calls style)
    ('<tool_call>\n{"name": "computer_use", "arguments": "{\\"action\\": \\"double_click\\", \\"coordinate\\": [5, 6]}"}\n</tool_call>',
     {"action": "double_click", "coordinate": (5, 6)}, None),
    # code fence inside the tag
    ('<tool_call>\n```json\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [1, 2]}}\n```\n</tool_call>',
     {"action": "left_click", "coordinate": (1, 2)}, None),
    # two calls: the first is the action; the second is kept too
    (call({"action": "left_click", "coordinate": [10, 10]}) + "\n" + call({"action": "type", "text": "x"}),
     {"action": "left_click", "coordinate": (10, 10)}, None),
    # tags inside a typed string do not cut the call
    (call({"action": "type", "text": "a <tool_call> b </tool_call> c"}),
     {"action": "type", "text": "a <tool_call> b </tool_call> c"}, None),
    # failures
    ("I think I should click the button.", None, None),
    ("", None, None),
    (call({"action": "fly", "coordinate": [1, 2]}), None, None),
    (call({"action": "key"}), None, None),  # keys missing
    (call({"action": "mouse_move"}), None, None),  # coordinate required
    ('<tool_call>\n{"name": "browser_use", "arguments": {"action": "left_click"}}\n</tool_call>', None, None),
    ("<tool_call>\n{not json at all\n</tool_call>", None, None),
    (call({"action": "left_click", "coordinate": [1, 2, 3]}), None, None),
    (call({"action": "wait", "time": -1}), None, None),
]


@pytest.mark.parametrize("reply, expected, action_line", TABLE)
def test_table(reply, expected, action_line):
    parsed = parse_response(reply)
    assert isinstance(parsed, ParsedResponse)
    if expected is None:
        assert parsed.action is None
        assert parsed.error and isinstance(parsed.error, str)
    else:
        assert parsed.error is None, parsed.error
        fields = parsed.action.model_dump(exclude_none=True)
        assert fields == expected
    assert parsed.action_line == action_line


def test_errors_say_what_was_wrong():
    assert parse_response("just text").error == "no <tool_call> block found"
    assert parse_response("").error == "the reply was empty"
    assert "unknown action 'fly'" in parse_response(call({"action": "fly"})).error
    assert "unknown function 'browser_use'" in parse_response(
        '<tool_call>{"name": "browser_use", "arguments": {"action": "wait", "time": 1}}</tool_call>').error
    assert "keys" in parse_response(call({"action": "key"})).error


def test_thought_and_multiple_calls():
    reply = "Thought: first the field.\n" + call({"action": "left_click", "coordinate": [10, 10]}) + call(
        {"action": "type", "text": "x"})
    parsed = parse_response(reply)
    assert parsed.thought == "Thought: first the field."
    assert [a.action for a in parsed.actions] == ["left_click", "type"]


def test_missing_brace_does_not_swallow_the_next_call():
    first = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [1, 2]}\n</tool_call>\n'
    parsed = parse_response(first + call({"action": "type", "text": "x"}))
    assert [a.action for a in parsed.actions] == ["left_click", "type"]


def test_strip_think():
    assert strip_think("<think>\nreason\n</think>\n\nAction: x") == ("Action: x", "reason")
    assert strip_think("no think") == ("no think", None)
    assert strip_think("a</think>b") == ("b", "a")
    typed = call({"action": "type", "text": "<think>x</think>"})
    assert strip_think(typed) == (typed, None)  # tags inside a tool call are the model's text


# ---------------------------------------------------------------- fuzzing

FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<think>", "</think>", "\n", "Action:", "Thought:", "{", "}", "[", "]", '"',
    "'", ",", ":", '"name": "computer_use"', '"arguments":', '"action":', '"left_click"', '"key"', '"type"',
    '"coordinate": [', '"keys": ["', "keys=['", '"text": "', '"pixels": ', '"time": ', '"status": "success"',
    "NaN", "Infinity", "-1e999", "1e309", "null", "true", "0x1F", "//", "/*", "\\u00e9", "\\", "```json", "```",
    '{"name": "computer_use", "arguments": {"action": "', "]}}", "\u200b", "点击", "🙂", "\x00",
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["action", "coordinate", "keys", "text", "pixels", "time", "status", "name", "arguments"])
        | st.text(max_size=8), children, max_size=5),
    max_leaves=12,
)
tool_call_like = st.builds(
    lambda args, pre, post, close: pre + "<tool_call>\n" + json.dumps(
        {"name": "computer_use", "arguments": args}, allow_nan=True) + ("\n</tool_call>" if close else "") + post,
    st.dictionaries(st.sampled_from(["action", "coordinate", "keys", "text", "pixels", "time", "status"]),
                    json_values | st.sampled_from(list(ACTION_NAMES)), max_size=5),
    st.text(max_size=30), st.text(max_size=30), st.booleans(),
)
fragment_soup = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=12), max_size=25).map("".join)
replies = st.one_of(st.text(max_size=200), fragment_soup, tool_call_like)


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(replies)
def test_fuzz_never_raises_and_is_consistent(reply):
    parsed = parse_response(reply)
    assert parsed.raw == reply
    assert (parsed.error is None) == bool(parsed.actions)
    for a in parsed.actions:
        assert isinstance(a, Action)
        if a.coordinate is not None:
            assert all(abs(c) < float("inf") for c in a.coordinate)
    before_call = parsed.text.split("<tool_call>")[0]
    assert "<think>" not in before_call and "</think>" not in before_call


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda v: round(v, 3))
safe_text = st.text(min_size=0, max_size=40)
actions = st.one_of(
    st.builds(lambda a, c: Action(action=a, coordinate=c),
              st.sampled_from(["left_click", "right_click", "middle_click", "double_click", "triple_click",
                               "mouse_move", "left_click_drag"]),
              st.tuples(st.integers(0, 1000), st.integers(0, 1000)).map(lambda t: (float(t[0]), float(t[1])))),
    st.builds(lambda k: Action(action="key", keys=k),
              st.lists(st.sampled_from(["ctrl", "alt", "shift", "a", "enter", "f4", "super", "Tab"]), min_size=1,
                       max_size=3)),
    st.builds(lambda t: Action(action="type", text=t), safe_text),
    st.builds(lambda t: Action(action="answer", text=t), safe_text),
    st.builds(lambda p: Action(action="scroll", pixels=p), finite),
    st.builds(lambda p: Action(action="hscroll", pixels=p), finite),
    st.builds(lambda t: Action(action="wait", time=t), finite.map(abs)),
    st.builds(lambda s: Action(action="terminate", status=s), st.sampled_from(["success", "failure"])),
)


@settings(max_examples=2_000, deadline=None)
@given(actions, st.text(max_size=60).filter(lambda s: "<tool_call>" not in s and "think>" not in s))
def test_fuzz_round_trip_of_every_action(action, thought):
    """Whatever the model writes via the schema comes back as the same typed Action."""
    reply = (thought + "\n" if thought else "") + action.tool_call_text()
    parsed = parse_response(reply)
    assert parsed.error is None, parsed.error
    assert parsed.action == action


def test_pathological_replies():
    huge = parse_response(call({"action": "scroll", "pixels": 10 ** 400}))
    assert huge.action is None and huge.error.startswith("pixels must be a number")
    nested = parse_response("<tool_call>" + "[" * 5000 + "</tool_call>")
    assert nested.action is None and nested.error
    braces = "{" * 3000 + "x" + "}" * 3000 + '{"name": "computer_use", "arguments": {"action": "wait", "time": 1}}'
    assert parse_response(braces).action == Action(action="wait", time=1)
