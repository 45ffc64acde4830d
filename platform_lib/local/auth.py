"""Per-person logins for the embedded platform: NativeAuthenticator with accounts made from the spec.

The hub runs :class:`ProjectNativeAuthenticator`: at start-up it makes the hub's account table match
``credentials.json`` in the state folder (one generated password per admin and member of the spec, see
:meth:`platform_lib.local.layout.ProjectLayout.credentials`). Sign-up and the password-change pages are
closed (JupyterHub's own login form is used), so that file stays the one source of truth; people not in the spec have no account and are not
in ``allowed_users``, so they cannot log in. Loaded by the hub from this file (see ``configs.PROCESS_MODULES``): it may import only the standard
library and the hub's own packages, never ``platform_lib``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode


class ProjectNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose accounts are exactly the people of a project spec."""

    credentials_file = Unicode(
        help="JSON file {user: {password, bcrypt}} (mode 0600) with the accounts to create at start-up.",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sync_accounts()

    def sync_accounts(self) -> None:
        """Create, update or delete rows of the account table so they match :attr:`credentials_file`."""
        accounts = json.loads(Path(self.credentials_file).read_text())
        db = self.db
        existing = {info.username: info for info in UserInfo.all_users(db)}
        for name, entry in accounts.items():
            hashed = entry["bcrypt"].encode()
            info = existing.pop(name, None)
            if info is None:
                db.add(UserInfo(username=name, password=hashed, is_authorized=True))
            elif info.password != hashed or not info.is_authorized:
                info.password = hashed
                info.is_authorized = True
        for info in existing.values():  # people removed from the spec
            db.delete(info)
        db.commit()
        self.log.info("ESDL: %d account(s) from %s", len(accounts), self.credentials_file)

    def get_handlers(self, app):
        # JupyterHub's own login page (its form posts to authenticate() below). NativeAuthenticator's
        # pages are left out: sign-up and self-service password changes are closed (credentials.json
        # rules), and its login handler of 1.3.0 fails under JupyterHub 6 (it uses the removed statsd).
        return []
