"""Per-person logins for the embedded platform: NativeAuthenticator with accounts made from the spec.

The hub runs :class:`ProjectNativeAuthenticator`: it makes the hub's account table match
``credentials.json`` in the state folder (the bcrypt hash of one generated password per admin and member of
the spec, see :meth:`platform_lib.local.layout.ProjectLayout.credentials`) at start-up and whenever the file
changes (``esdl passwd``). Sign-up and self-service password changes are closed (JupyterHub's own login
form is used); an admin may set a person's password on NativeAuthenticator's admin page
(``/hub/change-password/<user>``), which writes its hash back to that file, so it stays the one source
of truth; people not in the spec have no account and are not in
``allowed_users``, so they cannot log in. A failed login is answered after a delay (no lock-out that a
guesser could use against the owner). Loaded by the hub from this file (see ``configs.PROCESS_MODULES``): it
may import only the standard library and the hub's own packages, never ``platform_lib``.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path

from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import ChangePasswordAdminHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Float, Unicode


class ProjectNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose accounts are exactly the people of a project spec."""

    credentials_file = Unicode(
        help="JSON file {user: {bcrypt}} (mode 0600): the accounts, synced at start-up and when it changes.",
    ).tag(config=True)

    failed_login_delay = Float(
        1.0, help="Seconds a failed login waits before it is answered: slows guessing, locks nobody out."
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._synced = None
        self.sync_accounts()

    async def authenticate(self, handler, data):
        if self._stamp() != self._synced:  # `esdl passwd` or `esdl up` changed the accounts
            self.sync_accounts()
        username = await super().authenticate(handler, data)
        if not username:
            await asyncio.sleep(self.failed_login_delay)
        return username

    def _stamp(self):
        st = Path(self.credentials_file).stat()
        return st.st_mtime_ns, st.st_size

    def sync_accounts(self) -> None:
        """Create, update or delete rows of the account table so they match :attr:`credentials_file`."""
        self._synced = self._stamp()
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

    def change_password(self, username, new_password):
        """NativeAuthenticator's (an admin on ``/hub/change-password/<user>``), then the new hash is
        written to :attr:`credentials_file` too, so a restart or ``esdl up`` keeps it."""
        if not super().change_password(username, new_password):
            return None
        accounts = json.loads(Path(self.credentials_file).read_text())
        accounts[username] = {"bcrypt": self.get_user(username).password.decode()}
        path = Path(self.credentials_file)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
        with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600, like the file it replaces
            fh.write(json.dumps(accounts, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        self._synced = self._stamp()
        self.log.info("ESDL: an admin set a new password for %s", username)
        return True

    def get_handlers(self, app):
        # JupyterHub's own login page (its form posts to authenticate() below). Of NativeAuthenticator's
        # pages only the admins' password page is kept: sign-up and self-service password changes are
        # closed (credentials.json rules), and its login handler of 1.3.0 fails under JupyterHub 6 (it
        # uses the removed statsd).
        return [(r"/change-password/([^/]+)", ChangePasswordAdminHandler)]
