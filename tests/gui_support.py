"""What the GUI tests share (fixtures are in conftest.py)."""

from photofind.library.watcher import WatchOptions

# Short waits so a test's photos are picked up at once (the defaults suit people, not tests).
FAST = WatchOptions(quiet_s=0.1, max_delay_s=1.0, settle_s=0.2, health_s=0.2)
