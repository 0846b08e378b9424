"""The patch modes the compat matrix runs every suite in.

A mode names which monkey-patcher runs (if any) and with which keywords, before pytest is
imported. The keywords are the same for gevent and reseau_patch so the columns compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mode:
    """One column of the matrix: a patcher ("none", "gevent" or "reseau") and its keywords."""

    name: str
    patcher: str
    kwargs: dict[str, bool] = field(default_factory=dict)

    def describe(self) -> str:
        """The patch call this mode makes, as a user would write it."""
        if self.patcher == "none":
            return "no patching"
        call = {
            "gevent": "gevent.monkey.patch_all",
            "reseau": "reseau_patch.patch_all",
        }[self.patcher]
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{call}({args})"


_NO_THREAD = {"thread": False, "aggressive": False, "queue": False}

MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("plain", "none"),
        Mode("gevent", "gevent"),
        Mode("gevent-nothread", "gevent", dict(_NO_THREAD)),
        Mode("reseau", "reseau"),
        Mode("reseau-nothread", "reseau", dict(_NO_THREAD)),
    )
}
