"""python -m ops reconcile: cross-service checks over both services' databases."""
from __future__ import annotations

import sys

from carpet_common.cli import open_existing_database, report, start
from credit_service import models as credit_models
from render_service import models as render_models


def main(argv: list[str] | None = None) -> int:
    _args, settings = start("ops", ("reconcile",), argv)
    from ops.reconcile import problems

    render_db = open_existing_database(render_models.database, settings.render_database_url)
    credit_db = open_existing_database(credit_models.database, settings.credit_database_url)
    with render_db.connection_context(), credit_db.connection_context():
        return report(problems(), "every render charged as its job says, every change audited")


if __name__ == "__main__":
    sys.exit(main())
