"""The prompts Qwen3-VL was trained on for computer use, byte for byte.

Two profiles:

* ``qwen`` (default): the Qwen3-VL cookbook's ``computer_use`` tool (cookbooks/utils/agent_function_call.py)
  rendered through Qwen-Agent's Hermes template (``NousFnCallPrompt``). The system message is sent as the
  two text parts the cookbook sends: "You are a helpful assistant." and "\\n\\n# Tools…".
* ``osworld``: OSWorld's ``mm_agents/qwen3vl_agent.py`` (relative coordinates): no helpful-assistant line,
  ``name_for_human``/``args_format`` in the tool dict, a shorter enum and parameter descriptions, and an
  "Action:"-line response format. Its user turn lists older steps as ``Step i: <Action line>``.

The texts differ in small ways (commas, "unless asked", leading/trailing whitespace of the action
description) that are part of each training/evaluation setup, so they are kept as two literal tool dicts
rather than derived from one another.
"""

from __future__ import annotations

import json
from typing import Literal

Profile = Literal["qwen", "osworld"]
PROFILES: tuple[str, ...] = ("qwen", "osworld")

HELPFUL_ASSISTANT = "You are a helpful assistant."

# Qwen-Agent qwen_agent/llm/fncall_prompts/nous_fncall_prompt.py: FN_CALL_TEMPLATE
FN_CALL_TEMPLATE = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tool_descs}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""

_COOKBOOK_DESCRIPTION = """Use a mouse and keyboard to interact with a computer, and take screenshots.
* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. You must click on desktop icons to start applications.
* Some applications may take time to start or process actions, so you may need to wait and take successive screenshots to see the results of your actions. E.g. if you click on Firefox and a window doesn't open, try wait and taking another screenshot.
* The screen's resolution is {width}x{height}.
* Whenever you intend to move the cursor to click on an element like an icon, you should consult a screenshot to determine the coordinates of the element before moving the cursor.
* If you tried clicking on a program or link but it failed to load, even after waiting, try adjusting your cursor position so that the tip of the cursor visually falls on the element that you want to click.
* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. Don't click boxes on their edges."""

_ACTION_LIST = """* `key`: Performs key down presses on the arguments passed in order, then performs key releases in reverse order.
* `type`: Type a string of text on the keyboard.
* `mouse_move`: Move the cursor to a specified (x, y) pixel coordinate on the screen.
* `left_click`: Click the left mouse button at a specified (x, y) pixel coordinate on the screen.
* `left_click_drag`: Click and drag the cursor to a specified (x, y) pixel coordinate on the screen.
* `right_click`: Click the right mouse button at a specified (x, y) pixel coordinate on the screen.
* `middle_click`: Click the middle mouse button at a specified (x, y) pixel coordinate on the screen.
* `double_click`: Double-click the left mouse button at a specified (x, y) pixel coordinate on the screen.
* `triple_click`: Triple-click the left mouse button at a specified (x, y) pixel coordinate on the screen (simulated as double-click since it's the closest action).
* `scroll`: Performs a scroll of the mouse scroll wheel.
* `hscroll`: Performs a horizontal scroll (mapped to regular scroll).
* `wait`: Wait specified seconds for the change to happen.
* `terminate`: Terminate the current task and report its completion status.
* `answer`: Answer a question."""


def computer_use_function(width: int = 1000, height: int = 1000) -> dict:
    """The cookbook's ``ComputerUse.function``: ``{name, description, parameters}``."""
    return {
        "name": "computer_use",
        "description": _COOKBOOK_DESCRIPTION.format(width=width, height=height),
        "parameters": {
            "properties": {
                "action": {
                    "description": "The action to perform. The available actions are:\n" + _ACTION_LIST,
                    "enum": [
                        "key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
                        "middle_click", "double_click", "triple_click", "scroll", "hscroll", "wait",
                        "terminate", "answer",
                    ],
                    "type": "string",
                },
                "keys": {"description": "Required only by `action=key`.", "type": "array"},
                "text": {"description": "Required only by `action=type` and `action=answer`.", "type": "string"},
                "coordinate": {
                    "description": "(x, y): The x (pixels from the left edge) and y (pixels from the top edge) "
                    "coordinates to move the mouse to.",
                    "type": "array",
                },
                "pixels": {
                    "description": "The amount of scrolling to perform. Positive values scroll up, negative values "
                    "scroll down. Required only by `action=scroll` and `action=hscroll`.",
                    "type": "number",
                },
                "time": {"description": "The seconds to wait. Required only by `action=wait`.", "type": "number"},
                "status": {
                    "description": "The status of the task. Required only by `action=terminate`.",
                    "type": "string",
                    "enum": ["success", "failure"],
                },
            },
            "required": ["action"],
            "type": "object",
        },
    }


def osworld_tool() -> dict:
    """OSWorld's hand-written tool dict (``coordinate_type="relative"``)."""
    description = "\n".join([
        "Use a mouse and keyboard to interact with a computer, and take screenshots.",
        "* This is an interface to a desktop GUI. You do not have access to a terminal or applications menu. "
        "You must click on desktop icons to start applications.",
        "* Some applications may take time to start or process actions, so you may need to wait and take successive "
        "screenshots to see the results of your actions. E.g. if you click on Firefox and a window doesn't open, "
        "try wait and taking another screenshot.",
        "* The screen's resolution is 1000x1000.",
        "* Whenever you intend to move the cursor to click on an element like an icon, you should consult a "
        "screenshot to determine the coordinates of the element before moving the cursor.",
        "* If you tried clicking on a program or link but it failed to load even after waiting, try adjusting your "
        "cursor position so that the tip of the cursor visually falls on the element that you want to click.",
        "* Make sure to click any buttons, links, icons, etc with the cursor tip in the center of the element. "
        "Don't click boxes on their edges unless asked.",
    ])
    return {
        "type": "function",
        "function": {
            "name_for_human": "computer_use",
            "name": "computer_use",
            "description": description,
            "parameters": {
                "properties": {
                    # OSWorld's triple-quoted literal: a leading newline and the closing line's indentation.
                    "action": {
                        "description": "\n" + _ACTION_LIST + "\n        ",
                        "enum": ["key", "type", "mouse_move", "left_click", "left_click_drag", "right_click",
                                 "middle_click", "double_click", "scroll", "wait", "terminate"],
                        "type": "string",
                    },
                    "keys": {"description": "Required only by `action=key`.", "type": "array"},
                    "text": {"description": "Required only by `action=type`.", "type": "string"},
                    "coordinate": {"description": "The x,y coordinates for mouse actions.", "type": "array"},
                    "pixels": {"description": "The amount of scrolling.", "type": "number"},
                    "time": {"description": "The seconds to wait.", "type": "number"},
                    "status": {"description": "The status of the task.", "type": "string",
                               "enum": ["success", "failure"]},
                },
                "required": ["action"],
                "type": "object",
            },
            "args_format": "Format the arguments as a JSON object.",
        },
    }


OSWORLD_RESPONSE_FORMAT = """# Response format

Response format for every step:
1) Action: a short imperative describing what to do in the UI.
2) A single <tool_call>...</tool_call> block containing only the JSON: {"name": <function-name>, "arguments": <args-json-object>}.

Rules:
- Output exactly in the order: Action, <tool_call>.
- Be brief: one sentence for Action.
- Do not output anything else outside those parts.
- If finishing, use action=terminate in the tool call."""


def tools_block(profile: Profile = "qwen") -> str:
    """The ``# Tools`` block of the system prompt (for osworld: followed by its response format)."""
    if profile == "qwen":
        tool_descs = json.dumps({"type": "function", "function": computer_use_function()}, ensure_ascii=False)
        return FN_CALL_TEMPLATE.format(tool_descs=tool_descs)
    if profile == "osworld":
        return FN_CALL_TEMPLATE.format(tool_descs=json.dumps(osworld_tool())) + "\n\n" + OSWORLD_RESPONSE_FORMAT
    raise ValueError(f"unknown prompt profile {profile!r}; choose one of {', '.join(PROFILES)}")


def system_parts(profile: Profile = "qwen") -> list[str]:
    """The system message's text parts, in the order they are sent."""
    if profile == "qwen":
        return [HELPFUL_ASSISTANT, "\n\n" + tools_block("qwen")]
    return [tools_block(profile)]


def system_prompt(profile: Profile = "qwen") -> str:
    """The rendered system prompt (the chat template concatenates the parts)."""
    return "".join(system_parts(profile))


def system_message(profile: Profile = "qwen") -> dict:
    return {"role": "system", "content": [{"type": "text", "text": t} for t in system_parts(profile)]}


def previous_actions_text(action_lines: list[str], first_step: int = 1) -> str:
    """OSWorld's ``Step i: <Action line>`` list, or "None"."""
    lines = [f"Step {first_step + i}: {line}" for i, line in enumerate(action_lines)]
    return "\n".join(lines) if lines else "None"


def user_text(profile: Profile, instruction: str, older_action_lines: list[str]) -> str:
    """Text of the first user turn in the history window.

    ``older_action_lines`` are the Action lines of the steps that fell out of the screenshot window.
    """
    if profile == "osworld":
        # OSWorld's f-string starts with a newline.
        return (
            "\nPlease generate the next move according to the UI screenshot, instruction and previous actions.\n\n"
            f"Instruction: {instruction}\n\n"
            f"Previous actions:\n{previous_actions_text(older_action_lines)}"
        )
    if profile == "qwen":
        # The cookbook sends the bare query; steps outside the window are summarised the OSWorld way.
        if not older_action_lines:
            return instruction
        return f"{instruction}\n\nPrevious actions:\n{previous_actions_text(older_action_lines)}"
    raise ValueError(f"unknown prompt profile {profile!r}; choose one of {', '.join(PROFILES)}")


def grounding_text(description: str) -> str:
    """One-shot grounding query for ``Agent.locate``: the cookbook's style of direct UI command."""
    return f"Click on {description}."


def parse_error_feedback(error: str) -> str:
    """What the model is told after a reply that contained no usable tool call."""
    return (
        f"Your last reply could not be executed: {error}\n"
        "Reply with exactly one <tool_call>...</tool_call> block containing "
        '{"name": "computer_use", "arguments": {...}} with a valid action.'
    )


def unread_calls_note(error: str) -> str:
    """Told with the next screenshot when a reply's later tool calls could not be read (the earlier ones ran)."""
    return f"The rest of your last reply was not executed: {error}"


def declined_feedback(action_text: str) -> str:
    """What the model is told when the user declines an action at the confirmation prompt."""
    return f"The user declined this action, it was not executed: {action_text}\nChoose a different action."
