"""The names of Herald's Redis read-model keys: written by projections, read by the read API.

Every key starts with the deployment's namespace (`herald:` by default). A notification's
status hash is keyed by its id; the other keys are per tenant, and per recipient where they
say so.
"""

from __future__ import annotations

from uuid import UUID

# The newest notifications kept per recipient in `recent`.
RECENT_KEPT = 100


class RedisKeys:
    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}:"

    def status(self, notification_id: UUID | str) -> str:
        """A hash of the notification's current state, as GET /notifications/{id} shows it."""
        return f"{self.prefix}n:{notification_id}"

    def cached_status(self, notification_id: UUID | str) -> str:
        """The read API's own copy of a notification read from SQL while its status hash was
        missing: kept apart from the hash, which only the projector writes."""
        return f"{self.prefix}c:{notification_id}"

    def recent(self, tenant_id: str, recipient_hash: str) -> str:
        """A sorted set of notification ids, scored by request time in milliseconds. The
        recipient is named by the hex of its keyed hash: no address is ever in a key."""
        return f"{self.prefix}recent:{tenant_id}:{recipient_hash}"

    def unread(self, tenant_id: str) -> str:
        """A hash: recipient (hex of its keyed hash) to the number of notifications sent to it
        and not yet opened."""
        return f"{self.prefix}unread:{tenant_id}"

    def dashboard(self, tenant_id: str) -> str:
        """A hash of counters: `status:NAME` (notifications in it now), `events:NAME` (seen)."""
        return f"{self.prefix}dashboard:{tenant_id}"

    def offsets(self, projection: str) -> str:
        """A hash: Kafka partition to the next offset the projection reads there."""
        return f"{self.prefix}offsets:{projection}"

    def list_version(self, tenant_id: str) -> str:
        """A counter moved after every commit that changes the tenant's notifications: the
        tag every cached list of the tenant is keyed by."""
        return f"{self.prefix}listver:{tenant_id}"

    def list_pages(self, tenant_id: str) -> str:
        """The start of every cached list page key of the tenant."""
        return f"{self.prefix}list:{tenant_id}:"

    def list_page(self, tenant_id: str, version: str | int, query: str) -> str:
        """A cached page of the tenant's notification list at `version`, for `query`."""
        return f"{self.list_pages(tenant_id)}{version}:{query}"
