"""The waitress internals admin_gateway.hosting extends are there in the installed (pinned)
waitress; what they do is tested against real connections in
tests/security/test_slow_connections.py and tests/integration/test_admin_http.py."""
import types

import pytest
import waitress

from admin_gateway import hosting


def test_the_installed_waitress_has_what_hosting_extends():
    server = waitress.create_server(lambda environ, start: [], host="127.0.0.1", port=0)
    try:
        hosting.check_waitress(server)  # raises otherwise
        assert callable(server.maintenance) and isinstance(server.active_channels, dict)
    finally:
        server.close()


def test_a_server_without_them_is_refused():
    with pytest.raises(RuntimeError, match="lacks what admin_gateway.hosting extends"):
        hosting.check_waitress(types.SimpleNamespace(channel_class=object, accepting=True))
