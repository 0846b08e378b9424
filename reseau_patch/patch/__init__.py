"""The drop-in: ``patch_all()`` and the stdlib-shaped socket/ssl/select/queue shims."""

from .api import get_original, is_patched, patch_all

__all__ = ["get_original", "is_patched", "patch_all"]
