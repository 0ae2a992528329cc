"""The asynchronous image-API protocol (RENDER_API_MODE=async) against a fake service on
loopback: create, poll with backoff, the output by URL (fetched without the key) or inline,
failures and timeouts (cancelled at the API), retried creates, refused redirects; and jobs
through the real render service, recorded as made by `http-async`, charged only on success."""
import logging

import pytest

from credit_service.verify import verify_credit
from protos.carpet.render.v1 import render_pb2
from render_service.renderers import RenderError, RenderRequest, TransientRenderError
from render_service.renderers.async_http import AsyncHttpRenderer
from tests.builders import balance, create_carpet, create_org, submit, wait_final
from tests.fake_async_image_api import OUTPUT, FakeAsyncImageApi
from tests.fake_image_api import tiny_png

API_KEY = "sk-live-async-image-api-key-0123456789"
REQUEST = RenderRequest(job_id=7, mode="hd", carpet_image=tiny_png(), carpet_width_cm=100,
                        carpet_length_cm=150, room_image=None,
                        placement=((0.2, 0.6), (0.8, 0.6), (0.9, 0.95), (0.1, 0.95)))


def renderer(api, **options):
    values = dict(allow_http=True, poll_first_s=0.05, poll_max_s=0.2, deadline_s=10.0)
    values.update(options)
    return AsyncHttpRenderer(api.url, API_KEY, **values)


def test_a_prediction_is_polled_until_its_output_url_is_fetched_without_the_key():
    with FakeAsyncImageApi(["processing", "processing", "succeeded"]) as api:
        image = renderer(api).render(REQUEST)
    assert (image.data, image.content_type) == (OUTPUT, "image/png")
    assert api.polls == {"p1": 3}
    assert api.created[0]["job_id"] == 7 and api.created[0]["placement"][0] == [0.2, 0.6]
    assert api.authorization_by_path["predictions"] == {f"Bearer {API_KEY}"}
    assert api.authorization_by_path["outputs"] == {""}  # the key never goes elsewhere


def test_an_inline_output_and_a_missed_poll():
    with FakeAsyncImageApi(["status:503", "succeeded:inline"]) as api:
        image = renderer(api).render(REQUEST)
    assert image.data == OUTPUT and api.polls == {"p1": 2}


def test_a_failed_prediction_fails_the_render_with_its_reason():
    with FakeAsyncImageApi(["processing", "failed:no floor found"]) as api:
        with pytest.raises(RenderError) as failed:
            renderer(api).render(REQUEST)
    assert str(failed.value) == "image API failed the render: no floor found"
    assert api.cancels == []


def test_a_prediction_that_never_ends_is_cancelled_at_the_api():
    with FakeAsyncImageApi(["processing"]) as api:
        with pytest.raises(RenderError) as late:
            renderer(api, deadline_s=1.0).render(REQUEST)
    assert "did not finish within 1 s" in str(late.value)
    assert api.cancels == ["p1"]


def test_creates_are_retried_on_503_and_refused_on_400():
    with FakeAsyncImageApi(["status:503"], ["status:503"], ["succeeded"]) as api:
        assert renderer(api).render(REQUEST).data == OUTPUT
    assert len(api.created) == 3
    with FakeAsyncImageApi(["status:503"]) as api:
        with pytest.raises(TransientRenderError) as gave_up:
            renderer(api).render(REQUEST)
    assert "gave up after 3 attempts" in str(gave_up.value)
    with FakeAsyncImageApi(["status:400"]) as api:
        with pytest.raises(RenderError) as refused:
            renderer(api).render(REQUEST)
    assert str(refused.value) == "image API refused the request (HTTP 400)"
    assert len(api.created) == 1


def test_output_urls_must_be_https_unless_allowed(monkeypatch):
    with FakeAsyncImageApi(["succeeded"]) as api:
        strict = renderer(api)
        monkeypatch.setattr(strict, "_allow_http", False)  # the API itself was allowed http
        with pytest.raises(RenderError) as refused:
            strict.render(REQUEST)
    assert "output URL refused" in str(refused.value) and API_KEY not in str(refused.value)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("script, status, error_text", [
    (["processing", "succeeded"], render_pb2.RENDER_STATUS_SUCCESS, ""),
    (["failed:provider overloaded"], render_pb2.RENDER_STATUS_FAILED,
     "image API failed the render: provider overloaded"),
])
def test_jobs_through_the_async_protocol(render_server, credit_server, start_workers, caplog,
                                         script, status, error_text):
    caplog.set_level(logging.DEBUG)
    org = create_org(credit_server, "Acme", 10)
    carpet = create_carpet(render_server)
    with FakeAsyncImageApi(script) as api:
        start_workers(renderer(api))
        job = submit(render_server, org.id, carpet.id, mode="hd")
        done, _ = wait_final(render_server, job.id)
    assert (done.status, done.error_text) == (status, error_text)
    succeeded = status == render_pb2.RENDER_STATUS_SUCCESS
    assert done.renderer == ("http-async" if succeeded else "")
    assert balance(credit_server, org.id).balance == 10 - (4 if succeeded else 0)
    assert balance(credit_server, org.id).held == 0
    assert API_KEY not in caplog.text
    assert verify_credit() == []
