"""Which handler serves an HTTP request (the admin API, the widget's public API, the share
pages). The method and the path alone decide, with no I/O, so every route is unit-tested
(tests/unit/test_router.py).

Templates follow google.api.http's path syntax, as the protos declare them: `{id}` is one path
segment holding a numeric id (1 to 18 digits, so it always fits an int64), `{token}` one holding
an opaque token (1 to 32 letters, digits, `-` or `_`: a widget render's public id, a share
link's token); `{name=**}` is the rest of the path (the console's static files). A path matches
with or without a trailing slash. The label of a match is its template, never the request's path,
so metrics cannot grow with bogus paths.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_VARIABLE = re.compile(r"\{(\w+)(=\*\*)?\}")
SEGMENTS = {"id": "[0-9]{1,18}", "token": "[A-Za-z0-9_-]{1,32}"}
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Match(Generic[T]):
    """`target` is None when nothing is served here: `status` is then 404 (no such path) or
    405 (the path exists, with other methods: `allowed`)."""

    template: str
    target: T | None = None
    params: dict[str, str] = field(default_factory=dict)
    status: int = 200
    allowed: tuple[str, ...] = ()


def _pattern(template: str) -> re.Pattern[str]:
    parts, end = [], 0
    for variable in _VARIABLE.finditer(template):
        parts.append(re.escape(template[end:variable.start()]))
        name, rest = variable.group(1), variable.group(2) is not None
        if not rest and name not in SEGMENTS:
            raise ValueError(f"{template}: a path segment is {{id}} or {{token}}, not {{{name}}}")
        parts.append(f"(?P<{name}>{'.+' if rest else SEGMENTS[name]})")
        end = variable.end()
    parts.append(re.escape(template[end:]))
    return re.compile("".join(parts))


class Router(Generic[T]):
    def __init__(self) -> None:
        self._exact: dict[str, dict[str, T]] = {}
        self._templated: list[tuple[re.Pattern[str], str, dict[str, T]]] = []

    def add(self, method: str, template: str, target: T) -> None:
        template = template.rstrip("/") or "/"
        if _VARIABLE.search(template):
            methods = next((found for _, known, found in self._templated if known == template),
                           None)
            if methods is None:
                methods = {}
                self._templated.append((_pattern(template), template, methods))
        else:
            methods = self._exact.setdefault(template, {})
        if method in methods:
            raise ValueError(f"{method} {template} is routed twice")
        methods[method] = target

    @classmethod
    def of(cls, routes: Iterable[tuple[str, str, T]]) -> Router[T]:
        """A router of (method, template, target) rows."""
        router: Router[T] = cls()
        for method, template, target in routes:
            router.add(method, template, target)
        return router

    def routes(self) -> list[tuple[str, str]]:
        """(method, template) of every route."""
        return sorted([(method, path) for path, methods in self._exact.items()
                       for method in methods]
                      + [(method, template) for _, template, methods in self._templated
                         for method in methods])

    def match(self, method: str, path: str) -> Match[T]:
        path = path.rstrip("/") or "/"
        template, methods, params = path, self._exact.get(path), {}
        if methods is None:  # exact paths first: `/admin/carpets/import-report` is not an id
            for pattern, known, found in self._templated:
                matched = pattern.fullmatch(path)
                if matched:
                    template, methods, params = known, found, matched.groupdict()
                    break
        if methods is None:
            return Match(UNKNOWN, status=404)
        if method not in methods:
            return Match(template, status=405, allowed=tuple(sorted(methods)))
        return Match(template, methods[method], params)
