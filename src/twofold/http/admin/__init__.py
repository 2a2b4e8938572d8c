"""The admin face of a running service: ``/admin/api/`` (JSON) and ``/admin`` (dashboard).

Both are served by every ``HttpApi`` app (``twofold serve`` and a user's own), guarded by
the ``admin`` scope, or, without API keys, answering this machine only.
"""

from twofold.http.admin.guard import ADMIN_SCOPE, admin_guard
from twofold.http.admin.routes import AdminApi

__all__ = ["ADMIN_SCOPE", "AdminApi", "admin_guard"]
