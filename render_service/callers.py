"""Which organisations the caller of the RPC in progress acts for (for servicers; the domain code
is handed the answer)."""
from __future__ import annotations

from carpet_common.calls import current_principal


def own_organization() -> int | None:
    """The one organisation a caller acts for: STAFF its own; ADMIN and the internal
    backends, which act for any organisation, None."""
    principal = current_principal()
    return principal.organization_id if principal.is_staff else None


def scope(organization_id: int) -> int:
    """STAFF: its own organisation only (0 means its own); ADMIN and services as asked."""
    return current_principal().check_organization(organization_id)
