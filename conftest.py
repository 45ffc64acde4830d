"""Root pytest configuration: every test session (tests/ and the doctests in platform_lib/) runs with
its own temporary state folder, so nothing touches the repository's ``.esdl-state/``."""

import os
import tempfile

os.environ.setdefault("ESDL_STATE_DIR", tempfile.mkdtemp(prefix="esdl-test-state-"))
