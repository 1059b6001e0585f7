"""The token progress bar that the dump, the atlas and the Ray drivers share."""

from __future__ import annotations


class TokenBar:
    """tqdm over tokens (tokens/s is tqdm's rate), or nothing when disabled; the dump, the atlas
    and the Ray drivers all draw this one."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, unit="tok", unit_scale=True, desc=desc, dynamic_ncols=True
            )

    def update(self, n: int, postfix: str | None = None) -> None:
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
