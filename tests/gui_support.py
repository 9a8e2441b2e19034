"""What the GUI tests share (fixtures are in conftest.py)."""

from photofind.library.watcher import WatchOptions

# Short waits so a test's photos are picked up at once (the defaults suit people, not tests).
FAST = WatchOptions(quiet_s=0.1, max_delay_s=1.0, settle_s=0.2, health_s=0.2)


def demo_library(tmp_path_factory):
    """``(root, model, scenes)``: the demo library (300 generated photos) indexed with the
    trained tiny model, for a module-scoped fixture; skips when the model is not there."""
    import pytest

    from photofind.clip import load_model, resolve_model
    from photofind.demo import build_demo_library, demo_scenes
    from photofind.errors import PhotofindError

    try:
        resolve_model("tiny-synthetic")
    except PhotofindError:
        pytest.skip("resources/models/tiny-synthetic is not there yet")
    tiny = load_model("tiny-synthetic", provider="cpu")
    root = build_demo_library(tmp_path_factory.mktemp("demo"), tiny)
    return root, tiny, demo_scenes(root)
