"""``reseau_patch run`` puts this script's folder on sys.path, as python does."""

import helper_module  # noqa: F401 - lives next to this file

print("imported", helper_module.NAME)
