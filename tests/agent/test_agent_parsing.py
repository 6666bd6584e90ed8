"""Parser: table tests of real-looking replies, strict vs lenient reading, reasoning and truncation, and hypothesis
fuzzing (10,000+ generated strings). Replies collected from public sources are in test_agent_parsing_corpus.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.actions import ACTION_NAMES, Action
from agent.parsing import ParsedResponse, parse_response, split_reasoning


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
    # missing closing brace (vllm#22885): a bracket would have to be guessed, so no action
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "terminate", "status": "success"}\n</tool_call>',
     None, None),
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
    # a call drafted inside reasoning is not the reply's call
    ("<think>maybe " + call({"action": "left_click", "coordinate": [1, 1]}) + "</think>" + call({"action": "wait", "time": 1}),
     {"action": "wait", "time": 1.0}, None),
    # cut off: inside a number, after the action name, inside a string, inside the keys array, inside reasoning
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [183, 5', None, None),
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click"', None, None),
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "type", "text": "hel', None, None),
    ('<tool_call>\n{"name": "computer_use", "arguments": {"action": "key", "keys": ["ctrl", "s"', None, None),
    ("<think>I should click " + call({"action": "left_click", "coordinate": [1, 1]}), None, None),
    # bare {"action": ...} and aliases are lenient-only
    ('{"action": "left_click", "coordinate": [1, 2]}', None, None),
    (call({"action": "click", "coordinate": [1, 2]}), None, None),
    (call({"action": "terminate", "status": "done"}), None, None),
    ('<tool_call>\n{"arguments": {"action": "wait", "time": 1}}\n</tool_call>', None, None),
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
    # the unclosed object stops at </tool_call> (no guessing of its brace) and so do the calls after it
    assert parsed.actions == () and "not closed before '</tool_call>'" in parsed.error


def test_split_reasoning():
    assert split_reasoning("<think>\nreason\n</think>\n\nAction: x") == ("Action: x", "reason", False)
    assert split_reasoning("no think") == ("no think", None, False)
    assert split_reasoning("a</think>b") == ("b", "a", False)  # the generation prompt opened the block
    assert split_reasoning("<think>still thinking") == ("", "still thinking", True)
    # the first </think> ends reasoning; a typed "</think>" therefore breaks that call: no action, never a wrong one
    typed = call({"action": "type", "text": "a</think>b"})
    parsed = parse_response(typed)
    assert parsed.actions == () and parsed.error


def test_cut_off_calls_are_never_actions_and_say_so():
    full = 'Action: Click it.\n' + call({"action": "left_click", "coordinate": [183, 52]})
    closed = full.index("]}}") + 3  # the object is complete from here on
    for n in range(len(full) + 1):
        assert parse_response(full[:n]).actions == (() if n < closed else parse_response(full).actions), n
    cut = parse_response(full[:full.index("52") + 1])
    assert cut.actions == () and cut.cut_off and "cut off" in cut.error
    unclosed = parse_response("<think>I will click " + call({"action": "left_click", "coordinate": [1, 1]}))
    assert unclosed.actions == () and unclosed.cut_off and "<think> was never closed" in unclosed.error


def test_missing_close_tag_after_a_complete_object_is_the_one_repair():
    parsed = parse_response('<tool_call>\n{"name": "computer_use", "arguments": {"action": "wait", "time": 2}}')
    assert parsed.action == Action(action="wait", time=2) and not parsed.cut_off


def test_calls_after_an_unreadable_one_are_not_run():
    good, bad = call({"action": "left_click", "coordinate": [1, 2]}), call({"action": "fly"})
    parsed = parse_response(good + bad + call({"action": "type", "text": "x"}))
    assert [a.action for a in parsed.actions] == ["left_click"]
    assert parsed.error is None and "unknown action 'fly'" in parsed.call_errors[0]
    assert parse_response(bad + good).actions == ()


def test_untagged_call_lines_are_read_in_order_with_tagged_ones():
    # OSWorld reads a line holding a {"name", "arguments"} object as a call, tagged blocks too, in order
    line = json.dumps({"name": "computer_use", "arguments": {"action": "key", "keys": ["enter"]}})
    parsed = parse_response(line + "\n" + call({"action": "wait", "time": 1}))
    assert [a.action for a in parsed.actions] == ["key", "wait"]
    assert parse_response("I would call " + line).actions == ()  # not a line of its own: prose


@pytest.mark.parametrize("reply, expected", [
    ('{"action": "left_click", "coordinate": [1, 2]}', {"action": "left_click", "coordinate": (1, 2)}),
    (call({"action": "click", "coordinate": [1, 2]}), {"action": "left_click", "coordinate": (1, 2)}),
    (call({"action": "Double-Click", "coordinate": [1, 2]}), {"action": "double_click", "coordinate": (1, 2)}),
    (call({"action": "terminate", "status": "done"}), {"action": "terminate", "status": "success"}),
    (call({"action": "key", "key": "enter"}), {"action": "key", "keys": ["enter"]}),
    (call({"action": "left_click", "coordinate": [10, 20, 30, 40]}), {"action": "left_click", "coordinate": (20, 30)}),
    (call({"action": "left_click", "coordinate": "(5, 6)"}), {"action": "left_click", "coordinate": (5, 6)}),
    ('<tool_call>\n{"arguments": {"action": "wait", "time": 1}}\n</tool_call>', {"action": "wait", "time": 1.0}),
])
def test_lenient_option_accepts_aliases_and_bare_actions(reply, expected):
    assert parse_response(reply).actions == ()
    parsed = parse_response(reply, lenient=True)
    assert parsed.action.model_dump(exclude_none=True) == expected


def test_lenient_never_reads_cut_off_calls():
    assert parse_response('{"action": "left_click", "coordinate": [183, 5', lenient=True).actions == ()
    assert parse_response(call({"action": "click", "coordinate": [1, 2]})[:-20], lenient=True).actions == ()


# ---------------------------------------------------------------- fuzzing

FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<think>", "</think>", "\n", "Action:", "Thought:", "{", "}", "[", "]", '"',
    "'", ",", ":", '"name": "computer_use"', '{"action": "click"', '"done"', '"arguments":', '"action":', '"left_click"', '"key"', '"type"',
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
@given(replies, st.booleans())
def test_fuzz_never_raises_and_is_consistent(reply, lenient):
    parsed = parse_response(reply, lenient=lenient)
    assert parsed.raw == reply
    assert (parsed.error is None) == bool(parsed.actions)
    for a in parsed.actions:
        assert isinstance(a, Action)
        if a.coordinate is not None:
            assert all(abs(c) < float("inf") for c in a.coordinate)
    assert "</think>" not in parsed.raw or THINK_FREE(parsed)
    # no prefix of a reply reads an action the whole reply does not (truncation never invents an action)
    for n in sorted({len(reply) // 3, len(reply) // 2, len(reply) - 1} - {len(reply)}):
        if n >= 0:
            head = parse_response(reply[:n], lenient=lenient).actions
            assert parsed.actions[:len(head)] == head


def THINK_FREE(parsed: ParsedResponse) -> bool:
    return parsed.raw.partition("</think>")[2].strip() == parsed.text


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
    braces = "{" * 3000 + "x" + "}" * 3000 + '\n{"name": "computer_use", "arguments": {"action": "wait", "time": 1}}'
    assert parse_response(braces).action == Action(action="wait", time=1)
