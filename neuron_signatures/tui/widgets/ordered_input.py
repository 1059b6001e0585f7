"""An ``Input`` that applies every key in the order typed, however fast the keys come.

Textual's ``Input`` inserts a printable key in its own ``_on_key`` handler, but an editing key
(Backspace, Delete, arrows, Home/End) is only a binding: the key event bubbles up the DOM, one
message queue per ancestor, until the app looks the binding up and runs ``delete_left``. Keys that
arrive in a burst (fast typing, or keys queued while the app was busy showing a validation error)
are therefore applied out of order: ``5000``, four Backspaces and ``77`` gave ``50``, because both
``7`` were inserted before the last Backspaces came back down. Here the Input's own bindings run in
the same handler as printable keys, so the order is the typing order.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class OrderedInput(Input):
    """A text input whose editing keys are applied in the order typed (see the module doc)."""

    async def _on_key(self, event: events.Key) -> None:
        # Textual then calls Input._on_key (handlers run down the MRO) unless the default is
        # prevented: printable keys go on to it, editing keys are done here.
        if event.is_printable:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, ()):
            # As the app's binding lookup: an action that does not apply (e.g. scrolling down
            # an input of one line) leaves the key to the screen's bindings.
            if not binding.priority and await self.app.run_action(binding.action, self):
                event.stop()
                event.prevent_default()
                return
