"""Signals only set events (borg's rule: never raise from an arbitrary frame).

SIGTERM and SIGINT ask for a clean stop, SIGHUP for a reload of the settings.
"""

import asyncio
import signal
from collections.abc import Callable


def install(stop: asyncio.Event, reload: asyncio.Event) -> Callable[[], None]:
    """Route the signals to the events on the running loop; returns a function that undoes it."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    return remove
