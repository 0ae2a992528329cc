"""The HTTP renderer against a fake image API (a real HTTP server on loopback): retries on
429/5xx/timeouts with a bound, final job states, and the API key never in a log or an error."""
import logging
import time

import pytest

from carpet_common.settings import Settings
from credit_service.verify import verify_credit
from ops.reconcile import reconcile
from protos.carpet.render.v1 import render_pb2
from render_service.renderers import (
    FALLBACK_RENDERER,
    FallbackRenderer,
    RenderError,
    RenderRequest,
    TransientRenderError,
    renderer_from_settings,
)
from render_service.renderers.http import HttpRenderer
from render_service.renderers.local import LocalRenderer
from tests.builders import balance, create_carpet, create_org, settings_for, submit, wait_final
from tests.fake_image_api import FakeImageApi, tiny_png

API_KEY = "sk-live-fake-image-api-key-0123456789"
REQUEST = RenderRequest(job_id=1, mode="preview", carpet_image=tiny_png(), carpet_width_cm=100,
                        carpet_length_cm=150, room_image=None)


def renderer(api, **options):
    values = dict(timeout_s=1.0, attempts=3, backoff_s=0.05, allow_http=True)
    values.update(options)
    return HttpRenderer(api.url, API_KEY, **values)


def test_success_sends_the_key_only_in_the_header():
    with FakeImageApi(["ok"]) as api:
        image = renderer(api).render(REQUEST)
    assert image.content_type == "image/png" and image.data == tiny_png()
    assert api.authorizations == [f"Bearer {API_KEY}"]


def test_429_then_success_is_retried():
    with FakeImageApi(["retry-after:429:0", "ok"]) as api:
        assert renderer(api).render(REQUEST).content_type == "image/png"
    assert api.calls[1] == 2


@pytest.mark.parametrize("script, message", [
    (["status:500"], "image API answered HTTP 500 (gave up after 3 attempts)"),
    (["status:503"], "image API answered HTTP 503 (gave up after 3 attempts)"),
    (["slow:2"], "image API timed out (gave up after 3 attempts)"),
])
def test_transient_failures_are_retried_a_bounded_number_of_times(script, message, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeImageApi(script) as api:
        with pytest.raises(TransientRenderError) as raised:
            renderer(api).render(REQUEST)
    assert str(raised.value) == message
    assert api.calls[1] == 3
    assert API_KEY not in caplog.text and API_KEY not in str(raised.value)


def test_a_refusal_is_not_retried():
    with FakeImageApi(["status:400"]) as api:
        with pytest.raises(RenderError) as raised:
            renderer(api).render(REQUEST)
    assert str(raised.value) == "image API refused the request (HTTP 400)"
    assert api.calls[1] == 1


def test_only_https_unless_allowed_and_redirects_are_not_followed():
    with pytest.raises(ValueError) as refused:
        HttpRenderer("http://images.example/v1/render", API_KEY)
    assert "must be https://" in str(refused.value) and API_KEY not in str(refused.value)
    HttpRenderer("https://images.example/v1/render", API_KEY)  # fine: nothing is sent yet
    with FakeImageApi(["ok"]) as elsewhere, \
            FakeImageApi([f"redirect:{elsewhere.url}"]) as api:
        with pytest.raises(RenderError) as raised:
            renderer(api).render(REQUEST)
    assert str(raised.value) == "image API redirected (HTTP 307); redirects are not followed"
    assert elsewhere.total_calls() == 0 and elsewhere.authorizations == []


def test_unreachable_api():
    unreachable = HttpRenderer("http://127.0.0.1:9/", API_KEY, timeout_s=0.5, attempts=2,
                               backoff_s=0.01, allow_http=True)
    with pytest.raises(TransientRenderError) as raised:
        unreachable.render(REQUEST)
    assert API_KEY not in str(raised.value)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("script, status, error_text", [
    (["status:500"], render_pb2.RENDER_STATUS_FAILED,
     "image API answered HTTP 500 (gave up after 3 attempts)"),
    (["status:429", "ok"], render_pb2.RENDER_STATUS_SUCCESS, ""),
    (["slow:2"], render_pb2.RENDER_STATUS_FAILED, "image API timed out (gave up after 3 attempts)"),
])
def test_jobs_through_the_http_renderer(render_server, credit_server, start_workers,
                                        credit_db_url, render_db_url, caplog,
                                        script, status, error_text):
    caplog.set_level(logging.DEBUG)
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    with FakeImageApi(script) as api:
        start_workers(renderer(api))
        job = submit(render_server, org.id, carpet.id, mode="hd")
        done, _ = wait_final(render_server, job.id)
    assert (done.status, done.error_text) == (status, error_text)
    # The job records which renderer made its picture (none when it failed).
    assert done.renderer == ("http" if status == render_pb2.RENDER_STATUS_SUCCESS else "")
    charged = 4 if status == render_pb2.RENDER_STATUS_SUCCESS else 0
    assert done.credits_charged == charged
    assert balance(credit_server, org.id).balance == 10 - charged
    assert balance(credit_server, org.id).held == 0  # a failed render's hold is released
    assert API_KEY not in caplog.text and API_KEY not in done.error_text
    assert verify_credit() == []
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []


def test_the_fallback_setting_wraps_only_the_image_api():
    local = Settings(renderer="local", render_fallback="local")
    assert renderer_from_settings(local).name == "local"
    api = dict(renderer="http", render_api_url="https://images.example/v1/render",
               render_api_key=API_KEY)
    assert isinstance(renderer_from_settings(Settings(**api)), HttpRenderer)
    wrapped = renderer_from_settings(Settings(**api, render_fallback="local"))
    assert isinstance(wrapped, FallbackRenderer) and wrapped.name == "http"


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("charge", [False, True])
def test_a_down_image_api_falls_back_to_the_local_renderer(render_server, credit_server,
                                                            start_workers, credit_db_url,
                                                            render_db_url, charge):
    """RENDER_FALLBACK=local: the API answers 503 to every attempt; the job still succeeds,
    marked `local-fallback`, charged the mode's cost only when RENDER_FALLBACK_CHARGE is on."""
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    with FakeImageApi(["status:503"]) as api:
        start_workers(FallbackRenderer(renderer(api), LocalRenderer()),
                      render_fallback="local", render_fallback_charge=charge)
        job = submit(render_server, org.id, carpet.id, mode="hd")
        done, _ = wait_final(render_server, job.id)
        assert api.calls[1] == 3  # the API had its retries first
    assert (done.status, done.error_text, done.renderer) == (
        render_pb2.RENDER_STATUS_SUCCESS, "", FALLBACK_RENDERER)
    charged = 4 if charge else 0
    assert done.credits_charged == charged and bool(done.credit_log_id) == charge
    output = b"".join(chunk.data for chunk in render_server.renders.GetRenderOutput(
        render_pb2.GetRenderOutputRequest(id=job.id), timeout=10))
    assert output.startswith(b"\x89PNG") or output.startswith(b"\xff\xd8")
    deadline = time.monotonic() + 30  # the settler gives an uncharged job's hold back
    while balance(credit_server, org.id).held and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (balance(credit_server, org.id).balance, balance(credit_server, org.id).held) == (
        10 - charged, 0)
    assert verify_credit() == []
    assert reconcile(settings_for(credit_db_url, render_db_url)) == []
    if charge:  # the one capture-less success is the uncharged one: reconcile tells them apart
        from render_service.models import RenderJob, database

        with database.connection_context():
            (RenderJob.update(credits_charged=0, credit_log_id=None)
             .where(RenderJob.id == job.id).execute())
        assert reconcile(settings_for(credit_db_url, render_db_url)) == [
            f"invariant 4: uncharged fallback job {job.id} was charged (1 captures)"]
