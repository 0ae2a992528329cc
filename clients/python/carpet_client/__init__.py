"""carpet-client: the render and credit services for internal backends (`README.md`).

    from carpet_client import CarpetClient, Identity

    with CarpetClient("render:50052", "credit:50051", Identity.service(token)) as client:
        job = client.submit_and_wait(organization_id=7, carpet_id=3, mode="preview")
"""
from carpet_client._pb.carpet.credit.v1 import account_pb2, credit_pb2
from carpet_client._pb.carpet.render.v1 import render_pb2
from carpet_client.client import CarpetClient, Identity
from carpet_client.errors import (
    AlreadyExists,
    CarpetError,
    FailedPrecondition,
    IdempotencyKeyReused,
    InsufficientCredits,
    InvalidArgument,
    NotFound,
    OrganizationSuspended,
    PermissionDenied,
    RateLimited,
    RenderNotReady,
    SpendLimitReached,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists", "CarpetClient", "CarpetError", "FailedPrecondition", "Identity",
    "IdempotencyKeyReused", "InsufficientCredits", "InvalidArgument", "NotFound",
    "OrganizationSuspended", "PermissionDenied", "RateLimited", "RenderNotReady",
    "SpendLimitReached", "Unauthenticated", "Unavailable", "account_pb2", "credit_pb2",
    "render_pb2",
]
