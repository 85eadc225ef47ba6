from helpers import require_tool


def test_require_tool_finds_python():
    assert require_tool("python3").endswith("python3")
