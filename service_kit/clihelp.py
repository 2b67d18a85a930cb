"""One help style for every console script: each option's default shown, once."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after an option's help, unless the help already speaks of its default
    or there is none to show (``None``, ``False``, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], "") \
                or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)
