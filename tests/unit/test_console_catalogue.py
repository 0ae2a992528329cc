"""The console's catalogues (admin_gateway/static/i18n) name everything the server can say, in
both languages: every refusal reason in the error table and every one raised in the code,
every enum value, render mode and renderer, the credit log's own reasons, every audit action
(each RPC method) and outcome, grant kinds, webhook events, delivery states and every CSV
column. A missing key shows the server's English in the Turkish console, so this fails on
any."""
import ast
import glob
import importlib
import json
import os

import grpc
import pytest

from admin_gateway.exports import EXPORTS
from carpet_common import errors
from carpet_common.settings import load_settings
from credit_service import accounts, grants, ledger_sql
from credit_service.models import DELIVERY_STATES, WEBHOOK_EVENT_TYPES
from credit_service.verify import ORGANIZATION_CREATED
from protos.carpet.credit.v1 import credit_pb2
from render_service.renderers import FALLBACK_RENDERER
from render_service.renders import SUBMISSION_ERROR_TEXTS
from render_service.worker import WORKER_ERROR_TEXTS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = ("carpet_common", "credit_service", "render_service", "admin_gateway")


def catalogue(language):
    with open(os.path.join(ROOT, "admin_gateway", "static", "i18n", f"{language}.json"),
              encoding="utf-8") as handle:
        return json.load(handle)


def reasons_raised_in_code():
    """Every `reason="…"` literal passed in the services' code."""
    found = set()
    for package in SOURCES:
        for path in glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True):
            with open(path, encoding="utf-8") as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    found |= {keyword.value.value for keyword in node.keywords
                              if keyword.arg == "reason"
                              and isinstance(keyword.value, ast.Constant)
                              and isinstance(keyword.value.value, str)
                              and keyword.value.value.isupper()}
    return found


def proto_modules():
    for path in glob.glob(os.path.join(ROOT, "protos", "carpet", "*", "v1", "*_pb2.py")):
        yield importlib.import_module(os.path.relpath(path, ROOT)[:-3].replace(os.sep, "."))


def import_problem_codes():
    """Every problem code an import reports: the second argument of `row.refuse(column, code,
    message)` (the gateway) and `Problem(column, code, message)` (the render service)."""
    found = set()
    for path in ("admin_gateway/imports.py", "render_service/catalogue_import.py"):
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and len(node.args) >= 2
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                        "refuse", "Problem")
                    and isinstance(node.args[1], ast.Constant)):
                found.add(node.args[1].value)
    return found


def expected_keys():
    keys = {f"error.{cls.reason}" for cls in errors.ERROR_CLASSES}
    keys |= {f"error.{reason}" for reason in reasons_raised_in_code()}
    keys.add(f"error.{errors.DomainError.reason}")  # INTERNAL
    for module in proto_modules():
        for service in module.DESCRIPTOR.services_by_name.values():
            keys |= {f"action.{method.name}" for method in service.methods}
    keys.add(f"action.{ORGANIZATION_CREATED[1]}")
    keys |= {f"code.{code.name}" for code in grpc.StatusCode}
    keys |= {"outcome.ok", "outcome.denied", "outcome.error"}
    keys |= {f"kind.CREDIT_LOG_KIND_{kind.upper()}"
             for kind in ("seed", "adjust", "render", "expire")}
    keys |= {f"status.{status}" for status in ("queued", "processing", "success", "failed")}
    keys |= {"role.ROLE_ADMIN", "role.ROLE_STAFF"}
    keys |= {f"mode.{mode}" for mode in load_settings({}).render_modes}
    keys |= {f"renderer.{name}" for name in ("local", "http", "http-async", FALLBACK_RENDERER)}
    keys |= {f"csv.{column.header}" for export in EXPORTS.values() for column in export.columns}
    keys |= {f"jobError.{text}" for text in (*SUBMISSION_ERROR_TEXTS, *WORKER_ERROR_TEXTS)}
    keys |= {f"grantKind.{kind}" for kind in credit_pb2.GrantKind.keys()
             if kind != "GRANT_KIND_UNSPECIFIED"}
    keys |= {f"event.{event}" for event in WEBHOOK_EVENT_TYPES}
    keys |= {f"deliveryState.{state}" for state in DELIVERY_STATES}
    keys |= {f"importProblem.{code}" for code in import_problem_codes()}
    keys |= {f"importOutcome.{outcome}" for outcome in ("created", "updated", "unchanged",
                                                        "rejected")}
    keys |= {f"logReason.{reason}" for reason in (
        ledger_sql.RENDER_CHARGE, accounts.INITIAL_CREDIT, grants.EXPIRE_REASON,
        grants.RETURNED_REASON)}
    return keys


@pytest.mark.parametrize("language", ["tr", "en"])
def test_every_word_the_server_says_has_a_name_in(language):
    missing = sorted(expected_keys() - set(catalogue(language)))
    assert missing == []


def test_both_languages_have_the_same_keys_and_placeholders():
    turkish, english = catalogue("tr"), catalogue("en")
    assert sorted(set(turkish) ^ set(english)) == []
    for key, text in english.items():
        if isinstance(text, str):
            assert sorted(_placeholders(turkish[key])) == sorted(_placeholders(text)), key


def test_the_render_charge_reason_is_the_one_the_statements_write():
    assert ledger_sql.RENDER_CHARGE == "render charge"
    for statement in (ledger_sql._INSERT_RENDER_LOG, ledger_sql._CAPTURE_PG):
        assert f"'{ledger_sql.RENDER_CHARGE}'" in statement.text


def _placeholders(text):
    import re

    return re.findall(r"\{(\w+)\}", text)
