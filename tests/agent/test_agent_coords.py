"""Model grid → screenshot pixels → input coordinates, and visual-token counts."""

from __future__ import annotations

import pytest

from agent.coords import to_grid, to_pixels, visual_tokens
from tools.base import ScreenGeometry


def test_grid_to_pixels_default_divisor_1000():
    assert to_pixels((500, 500), (1920, 1080)) == (960.0, 540.0)
    assert to_pixels((0, 0), (1920, 1080)) == (0.0, 0.0)
    assert to_pixels((250, 750), (1280, 800)) == (320.0, 600.0)


def test_divisor_999_matches_osworld_mapping():
    # OSWorld: int(x * W / 999)
    x, y = to_pixels((999, 500), (1920, 1080), divisor=999)
    assert (x, y) == (1919.0, pytest.approx(500 * 1080 / 999))
    assert int(to_pixels((321, 654), (1920, 1080), 999)[0]) == int(321 * 1920 / 999)


def test_clamped_inside_the_screenshot():
    assert to_pixels((1000, 1000), (1920, 1080)) == (1919.0, 1079.0)
    assert to_pixels((1200, -50), (1920, 1080)) == (1919.0, 0.0)


def test_bad_divisor():
    with pytest.raises(ValueError, match="divisor"):
        to_pixels((1, 1), (10, 10), divisor=0)


def test_pixel_grid_round_trip():
    for px in [(0, 0), (640, 400), (1279, 799), (13, 777)]:
        g = to_grid(px, (1280, 800))
        back = to_pixels(g, (1280, 800))
        assert abs(back[0] - px[0]) <= 1280 / 1000 and abs(back[1] - px[1]) <= 800 / 1000


def test_hidpi_2x_through_screen_geometry():
    # Retina-style: 2880x1800 physical screenshot, 1440x900 logical input points.
    geo = ScreenGeometry(shot_width=2880, shot_height=1800, input_width=1440, input_height=900)
    px = to_pixels((500, 500), (2880, 1800))
    assert px == (1440.0, 900.0)
    assert geo.to_input(*px) == (720, 450)  # the centre in input points, not physical pixels
    assert geo.to_input(*to_pixels((1000, 1000), (2880, 1800))) == (1439, 899)


def test_negative_monitor_offset_through_screen_geometry():
    # A second monitor left of the primary: its origin is at x = -1920 in the input space.
    geo = ScreenGeometry(shot_width=1920, shot_height=1080, input_width=1920, input_height=1080, left=-1920, top=-200)
    assert geo.to_input(*to_pixels((0, 0), (1920, 1080))) == (-1920, -200)
    assert geo.to_input(*to_pixels((500, 500), (1920, 1080))) == (-960, 340)
    assert geo.to_input(*to_pixels((1000, 1000), (1920, 1080))) == (-1, 879)


def test_hidpi_and_offset_together():
    geo = ScreenGeometry(shot_width=3840, shot_height=2160, input_width=1920, input_height=1080, left=1920, top=0)
    assert geo.to_input(*to_pixels((250, 100), (3840, 2160))) == (1920 + 480, 108)


@pytest.mark.parametrize("size, max_pixels, tokens", [
    ((1280, 720), 12845056, 880),
    ((1920, 1080), 12845056, 2040),
    ((2560, 1440), 12845056, 3600),
    ((2880, 1800), 12845056, 5040),
    ((3840, 2160), 12845056, 8160),
    ((5120, 2880), 12845056, 12516),
    ((5120, 2880), 13107200, 12600),
    ((3840, 2160), 6553600, 6360),
])
def test_visual_tokens_table_from_the_doc(size, max_pixels, tokens):
    # shared/docs/computer-use.md §1.7 (smart_resize, factor 32)
    assert visual_tokens(size, max_pixels=max_pixels, min_pixels=3136) == tokens


def test_visual_tokens_default_is_the_processor_budget():
    assert visual_tokens((1280, 800)) == 40 * 25


# ---------------------------------------------------------------- OSWorld's pixel

def osworld_adjust(x: float, y: float, original_width: int, original_height: int) -> tuple[int, int]:
    """Transcription of mm_agents/qwen3vl_agent.py parse_response.adjust_coordinates, coordinate_type="relative"."""
    x_scale = original_width / 999
    y_scale = original_height / 999
    return int(x * x_scale), int(y * y_scale)


@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (1, 1), (3840, 2160), (1366, 768)])
def test_osworld_profile_clicks_osworld_pixel_for_every_grid_value(size):
    from agent.coords import PROFILE_GRID

    divisor, floor = PROFILE_GRID["osworld"]
    w, h = size
    clamped = []
    for v in range(1001):
        ox, oy = osworld_adjust(v, v, w, h)
        x, y = to_pixels((v, v), size, divisor, floor)
        # OSWorld's pixel, except that it is kept on screen (OSWorld's x = W, W + 1 lie outside it)
        assert (x, y) == (min(ox, w - 1), min(oy, h - 1)), v
        if ox > w - 1 or oy > h - 1:
            clamped.append(v)
    assert clamped == [999, 1000]  # the only values OSWorld sends off screen


def test_osworld_edges_and_the_qwen_profile_unchanged():
    from agent.coords import PROFILE_GRID

    osw = PROFILE_GRID["osworld"]
    assert to_pixels((0, 0), (1920, 1080), *osw) == (0.0, 0.0)
    assert to_pixels((998, 998), (1920, 1080), *osw) == (1918.0, 1078.0)
    assert to_pixels((500, 500), (1920, 1080), *osw) == (960.0, 540.0)  # 500 * 1.9219.. = 960.96: floor, not round
    assert to_pixels((321, 321), (1280, 720), *osw) == (411.0, 231.0)
    assert PROFILE_GRID["qwen"] == (1000, False)
    assert to_pixels((321, 654), (1920, 1080), *PROFILE_GRID["qwen"]) == (321 / 1000 * 1920, 654 / 1000 * 1080)


def test_agent_config_uses_the_profile_grid_unless_overridden():
    from agent.loop import AgentConfig

    assert (AgentConfig().coord_divisor, AgentConfig().coord_floor) == (1000, False)
    osw = AgentConfig(prompt_profile="osworld")
    assert (osw.coord_divisor, osw.coord_floor) == (999, True)
    assert AgentConfig(prompt_profile="osworld", coord_divisor=1000).coord_divisor == 1000
