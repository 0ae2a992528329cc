"""The container image's entry point (`Containerfile`, `docs/operations.md`): one image runs any
of the three services or a one-shot task, named by the first argument.

    credit | render | gateway       serve (the process replaces this one: signals reach it)
    migrate                         both services' schemas, credit first
    seed                            the first organisation and admin (SEED_*)
    setup                           migrate, seed, and three demo carpets in an empty
                                    catalogue (the local stack of compose.yaml)
    verify                          both services' books and audit chain; exit 1 on a problem
    reconcile                       the credit and render ledgers against each other
    healthcheck ADDRESS             exit 0 when ADDRESS answers gRPC health SERVING (compose)

Settings come from the environment as for every process (README, "Settings").
"""
from __future__ import annotations

import os
import subprocess
import sys

SERVE = {"credit": "credit_service", "render": "render_service", "gateway": "admin_gateway"}
TASKS = {
    "migrate": (("credit_service", "migrate"), ("render_service", "migrate")),
    "seed": (("credit_service", "seed"),),
    "setup": (("credit_service", "migrate"), ("render_service", "migrate"),
              ("credit_service", "seed"), ("render_service", "seed")),
    "verify": (("credit_service", "verify"), ("render_service", "verify")),
    "reconcile": (("ops", "reconcile"),),
}
USAGE = (f"usage: {' | '.join([*SERVE, *TASKS])} | healthcheck ADDRESS "
         "(docs/operations.md)")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in (*SERVE, *TASKS, "healthcheck"):
        print(USAGE, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command in SERVE:
        os.execv(sys.executable, [sys.executable, "-m", SERVE[command], "serve", *rest])
    if command == "healthcheck":
        return healthcheck(rest)
    for module, step in TASKS[command]:
        finished = subprocess.run([sys.executable, "-m", module, step, *rest], check=False)
        if finished.returncode != 0:
            return finished.returncode
    return 0


def healthcheck(args: list[str]) -> int:
    """Plaintext, for HEALTH_ADDR (the probe listener of `carpet_common.server`)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if len(args) != 1:
        print("usage: healthcheck ADDRESS (a service's HEALTH_ADDR)", file=sys.stderr)
        return 2
    with grpc.insecure_channel(args[0]) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.RpcError as error:
            print(f"healthcheck: {error.code().name}", file=sys.stderr)
            return 1
    serving = answer.status == health_pb2.HealthCheckResponse.SERVING
    print("healthcheck: " + ("SERVING" if serving else "NOT_SERVING"))
    return 0 if serving else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
