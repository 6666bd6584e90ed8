"""Real Qwen-VL replies (tests/agent/corpus/replies.json, each with its source) through agent.parsing: the action
list of each reply, of every prefix of it (truncation), and of reasoning, multi-call and missing-close-tag
variants built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.parsing import parse_response

CORPUS = json.loads((Path(__file__).parent / "corpus" / "replies.json").read_text(encoding="utf-8"))["replies"]
IDS = [e["id"] for e in CORPUS]


def fields(actions) -> list[dict]:
    return [json.loads(a.model_dump_json(exclude_none=True)) for a in actions]


def variants(entry: dict) -> list[tuple[str, str, list[dict]]]:
    """(name, reply, expected actions) for the reply itself and replies derived from it."""
    reply, expected = entry["reply"], entry["actions"]
    out = [("as collected", reply, expected)]
    draft = '<tool_call>\n{"name": "computer_use", "arguments": {"action": "left_click", "coordinate": [1, 1]}}\n</tool_call>'
    # reasoning closed before the reply: a call drafted inside it is never read
    out.append(("think", f"<think>\nI could {draft} but let me check first.\n</think>\n\n{reply}", expected))
    out.append(("empty think", f"<think>\n\n</think>\n\n{reply}", expected))  # thinking off (QwenLM/Qwen3-VL#1509)
    out.append(("template-opened think", f"Looking at the screen.\n</think>\n\n{reply}", expected))
    # the same reply twice: two calls, in order
    out.append(("two calls", reply.rstrip() + "\n" + reply.split("<tool_call>", 1)[-1].join(["<tool_call>", ""])
                if "<tool_call>" in reply else reply, expected * 2 if "<tool_call>" in reply else expected))
    if reply.rstrip().endswith("</tool_call>"):  # the one repair: a complete object without its close tag
        out.append(("no close tag", reply.rstrip()[: -len("</tool_call>")], expected))
    if '"mobile_use"' in reply:  # the same text addressed to our tool (derived, not collected)
        renamed = reply.replace('"mobile_use"', '"computer_use"').replace('"click"', '"left_click"')
        coordinate = json.loads(renamed.split("<tool_call>")[1].split("</tool_call>")[0])["arguments"]["coordinate"]
        out.append(("renamed to computer_use", renamed, [{"action": "left_click", "coordinate": coordinate}]))
    return out


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_corpus_reply_reads_as_recorded(entry):
    parsed = parse_response(entry["reply"])
    assert fields(parsed.actions) == entry["actions"]
    if entry.get("error"):
        assert entry["error"] in parsed.error
    if "action_line" in entry:
        assert parsed.action_line == entry["action_line"]


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_corpus_variants(entry):
    for name, reply, expected in variants(entry):
        assert fields(parse_response(reply).actions) == expected, name


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
@pytest.mark.parametrize("lenient", [False, True])
def test_no_prefix_reads_an_action_the_whole_reply_does_not(entry, lenient):
    for name, reply, _ in variants(entry):
        full = parse_response(reply, lenient=lenient).actions
        for n in range(len(reply)):
            head = parse_response(reply[:n], lenient=lenient).actions
            assert full[:len(head)] == head, (name, n, reply[:n])
        if full:  # cut just before the last call's closing brace: that call is not read
            cut = reply.rstrip().rfind("}")
            assert len(parse_response(reply[:cut], lenient=lenient).actions) == len(full) - 1, name
