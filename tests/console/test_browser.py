"""The console in a real browser, against a real orchestrator and an SDK worker."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from playwright.async_api import Page, expect

from failhook.v1 import dead_letter_service_pb2 as dl
from failhook.v1 import run_pb2
from failhook_orchestrator.engine.breaker import CallResult
from tests.conftest import status_code
from tests.support.harness import FAST_HOOK_POLICY

from .conftest import Console, Setup, start_console, stop_console

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


async def _open(page: Page, console: Console, path: str = "/dead-letters") -> None:
    """Open the console's URL with its token (a new session), then ``path``."""
    await page.goto(console.url)
    await page.goto(console.base + path)


async def test_the_dlq_page_lists_the_failed_runs(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    expired = await setup.dead_lettered("checkout", {"card": "expired"})
    refund = await setup.dead_lettered("refund", {"order": "o-1"})
    await _open(page, console)
    rows = page.locator("tr.dead-letter")
    for run in (expired, refund):
        row = rows.filter(has=page.locator(f'[href="/dead-letters/{run.dead_letter_id}"]'))
        await expect(row).to_have_count(1)
    checkout_row = rows.filter(has=page.locator(f'[href="/dead-letters/{expired.dead_letter_id}"]'))
    await expect(checkout_row).to_contain_text("checkout")
    await expect(checkout_row).to_contain_text("charge")
    await expect(checkout_row).to_contain_text("INTERNAL")
    await expect(checkout_row).to_contain_text("SUCCEEDED")  # the hook answered
    await page.screenshot(path=screenshots / "dead-letters.png", full_page=True)


async def test_a_filter_narrows_the_list(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    expired = await setup.dead_lettered("checkout", {"card": "expired"})
    refund = await setup.dead_lettered("refund", {"order": "o-2"})
    await _open(page, console)
    await page.get_by_label("Failed step").fill("notify")
    await page.get_by_role("checkbox", name="failed").check()
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(re.compile(r"failed_step=notify.*hook_state=failed"))
    rows = page.locator("tr.dead-letter")
    await expect(
        rows.filter(has=page.locator(f'[href="/dead-letters/{refund.dead_letter_id}"]'))
    ).to_have_count(1)
    await expect(page.locator(f'[href="/dead-letters/{expired.dead_letter_id}"]')).to_have_count(0)
    for text in await rows.all_inner_texts():
        assert "refund" in text and "notify" in text and "FAILED" in text
    await page.screenshot(path=screenshots / "dead-letters-filtered.png", full_page=True)

    await page.goto(console.base + "/dead-letters?workflow=checkout&fail_status=INTERNAL&after=1h")
    await expect(page.locator(f'[href="/dead-letters/{expired.dead_letter_id}"]')).to_have_count(1)
    await expect(page.locator(f'[href="/dead-letters/{refund.dead_letter_id}"]')).to_have_count(0)

    await page.goto(console.base + "/dead-letters?fail_status=NOT_A_CODE")
    await expect(page.get_by_role("alert")).to_contain_text("fail_status")


async def test_pages_follow_the_next_page_token(page: Page, console: Console, setup: Setup) -> None:
    for n in range(3):
        await setup.dead_lettered("refund", {"order": f"page-{n}"})
    await _open(page, console, "/dead-letters?workflow=refund&page_size=2")
    await expect(page.locator("tr.dead-letter")).to_have_count(2)
    first = await page.locator("tr.dead-letter").first.get_attribute("data-id")
    await page.get_by_role("link", name="Next page →").click()
    await expect(page.locator("tr.dead-letter").first).not_to_have_attribute("data-id", first or "")
    assert "page_token=" in page.url and "workflow=refund" in page.url


async def test_the_detail_page_shows_the_attempts(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    run = await setup.dead_lettered("checkout", {"card": "expired"})
    entry = await setup.harness.dead_letter(run.dead_letter_id)
    await _open(page, console, f"/dead-letters/{run.dead_letter_id}")
    failure = page.locator("section.failure")
    attempts = failure.locator("tr.attempt")
    await expect(attempts).to_have_count(len(entry.failure.attempts))
    assert len(entry.failure.attempts) == 4  # FAST_STEP_POLICY: 4 attempts of a retryable failure
    await expect(attempts.first).to_contain_text("INTERNAL")
    await expect(failure.locator("svg.timeline rect")).to_have_count(4)
    await expect(failure).to_contain_text("card expired: the PSP answered 500")
    await expect(failure).to_contain_text("x-psp")
    hook = page.locator("section.hook")
    await expect(hook).to_contain_text("SUCCEEDED")
    await expect(hook).to_contain_text(f"paged on-call for {run.run_id}")
    await expect(hook).to_contain_text(entry.hook.idempotency_key)
    await expect(page.locator("pre.payload")).to_contain_text('"card": "expired"')
    await expect(page.locator("main")).to_contain_text(entry.trace_id)
    for name in ("Resume…", "Restart", "Delete"):
        await expect(page.get_by_role("link", name=name)).to_be_visible()
    await expect(page.get_by_role("link", name="Retry hook")).to_have_count(0)  # the hook succeeded
    await page.screenshot(path=screenshots / "dead-letter.png", full_page=True)


async def test_resume_with_an_edited_payload_makes_the_run_succeed(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    run = await setup.dead_lettered("checkout", {"card": "expired"})
    await _open(page, console, f"/dead-letters/{run.dead_letter_id}")
    await page.get_by_role("link", name="Resume…").click()
    await expect(page.get_by_role("heading", name="Resume the run?")).to_be_visible()
    await page.get_by_role("checkbox", name="Replace the payload with:").check()
    await page.locator("textarea[name=payload]").fill(json.dumps({"card": "visa-4242"}, indent=2))
    await page.screenshot(path=screenshots / "resume-confirm.png", full_page=True)
    await page.get_by_role("button", name="Confirm: resume the run").click()
    await expect(page.get_by_role("status")).to_contain_text("Resumed")
    new_run_id = page.url.split("/runs/")[1].split("?")[0]
    assert new_run_id != run.run_id
    done = await setup.harness.wait(new_run_id, [run_pb2.RUN_STATE_SUCCEEDED])
    assert json.loads(done.output) == {"validate": "valid", "receipt": "charged visa-4242"}
    assert done.parent_run_id == run.run_id and done.origin == run_pb2.RUN_ORIGIN_RESUME
    await page.reload()
    await expect(page.locator("h1 .chip")).to_have_text("SUCCEEDED")
    await expect(page.locator("tr.step")).to_have_count(2)
    await expect(page.locator("pre.output")).to_contain_text("charged visa-4242")
    await page.screenshot(path=screenshots / "run.png", full_page=True)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await setup.harness.dead_letter(run.dead_letter_id)
    assert status_code(gone.value) == grpc.StatusCode.NOT_FOUND


async def test_restart_retry_hook_and_delete_each_confirm_first(
    page: Page, console: Console, setup: Setup
) -> None:
    restarted = await setup.dead_lettered("checkout", {"card": "expired"})
    await _open(page, console, f"/dead-letters/{restarted.dead_letter_id}")
    await page.get_by_role("link", name="Restart").click()
    await page.get_by_role("button", name="Confirm: restart the run").click()
    await expect(page.get_by_role("status")).to_contain_text("Restarted")
    new_run = await setup.harness.get(page.url.split("/runs/")[1].split("?")[0])
    assert new_run.origin == run_pb2.RUN_ORIGIN_RESTART and new_run.parent_run_id == restarted.run_id

    hooked = await setup.dead_lettered("refund", {"order": "o-hook"})
    attempts = (await setup.harness.dead_letter(hooked.dead_letter_id)).hook.attempts
    assert attempts == FAST_HOOK_POLICY.max_attempts  # the raising handler was retried
    await page.goto(console.base + f"/dead-letters/{hooked.dead_letter_id}")
    await expect(page.locator("section.hook")).to_contain_text("ticketing system down")
    await page.get_by_role("link", name="Retry hook").click()
    await page.get_by_role("button", name="Confirm: retry the failure hook").click()
    await expect(page.get_by_role("status")).to_contain_text("delivered again")

    deleted = await setup.dead_lettered("refund", {"order": "o-delete"})
    await page.goto(console.base + f"/dead-letters/{deleted.dead_letter_id}")
    await page.get_by_role("link", name="Delete").click()
    await expect(page.get_by_text("This cannot be undone")).to_be_visible()
    await page.get_by_role("button", name="Confirm: delete the dead letter").click()
    await expect(page.get_by_role("status")).to_contain_text("deleted")
    deleted_request = dl.GetDeadLetterRequest(dead_letter_id=deleted.dead_letter_id)
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await setup.harness.dlq.GetDeadLetter(deleted_request)
    assert status_code(gone.value) == grpc.StatusCode.NOT_FOUND


async def test_a_request_without_the_token_is_refused(page: Page, console: Console) -> None:
    response = await page.goto(console.base + "/dead-letters")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading")).to_have_text("Access token required")
    response = await page.goto(console.base + "/?token=" + "x" * 43)
    assert response is not None and response.status == 403
    assert await page.context.cookies() == []

    response = await page.goto(console.url)
    assert response is not None and response.status == 200
    assert "token=" not in page.url  # the token leaves the address bar once the session exists
    (cookie,) = await page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert console.token not in cookie["value"]
    await expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_post_without_the_anti_forgery_token_is_refused(
    page: Page, console: Console, setup: Setup
) -> None:
    run = await setup.dead_lettered("refund", {"order": "o-csrf"})
    await _open(page, console, f"/dead-letters/{run.dead_letter_id}/delete")
    await page.locator("input[name=csrf_token]").evaluate("input => input.remove()")
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await page.get_by_role("button", name="Confirm: delete the dead letter").click()
    assert (await posted.value).status == 403
    await expect(page.get_by_role("heading")).to_have_text("Anti-forgery token missing or wrong")

    await page.goto(console.base + f"/dead-letters/{run.dead_letter_id}/delete")
    await page.locator("input[name=csrf_token]").evaluate("input => { input.value = 'forged'; }")
    await page.get_by_role("button", name="Confirm: delete the dead letter").click()
    await expect(page.get_by_role("heading")).to_have_text("Anti-forgery token missing or wrong")
    assert (await setup.harness.dead_letter(run.dead_letter_id)).dead_letter_id == run.dead_letter_id


async def test_permission_denied_is_shown(
    page: Page, setup: Setup, tmp_path: Path, screenshots: Path
) -> None:
    run = await setup.dead_lettered("refund", {"order": "o-denied"})
    reader = await start_console(setup, "worker", tmp_path)  # roles submit and read, not operate
    try:
        await _open(page, reader, f"/dead-letters/{run.dead_letter_id}")
        await expect(page.locator("section.failure")).to_contain_text("customer has no e-mail address")
        await page.get_by_role("link", name="Restart").click()
        async with page.expect_response(lambda r: r.request.method == "POST") as posted:
            await page.get_by_role("button", name="Confirm: restart the run").click()
        assert (await posted.value).status == 403
        alert = page.get_by_role("alert")
        await expect(alert).to_contain_text("PERMISSION_DENIED")
        await expect(alert).to_contain_text("operate")
        await page.screenshot(path=screenshots / "permission-denied.png", full_page=True)
    finally:
        await stop_console(reader)
    assert (await setup.harness.dead_letter(run.dead_letter_id)).run.run_id == run.run_id


async def test_runs_list_and_one_run(page: Page, console: Console, setup: Setup, screenshots: Path) -> None:
    run = await setup.dead_lettered("refund", {"order": "o-runs"})
    await _open(page, console, "/runs?workflow=refund&state=dead_lettered")
    rows = page.locator("tr.run")
    await expect(rows.filter(has=page.locator(f'[href="/runs/{run.run_id}"]'))).to_have_count(1)
    for text in await rows.all_inner_texts():
        assert "refund" in text and "DEAD_LETTERED" in text
    await page.screenshot(path=screenshots / "runs.png", full_page=True)
    await page.goto(console.base + "/runs?state=succeeded&workflow=refund")
    await expect(page.locator(f'[href="/runs/{run.run_id}"]')).to_have_count(0)
    await page.goto(console.base + f"/runs/{run.run_id}")
    await expect(page.locator("tr.step")).to_contain_text(["lookup"])
    await expect(page.locator("section.failure")).to_contain_text("notify")
    await expect(page.get_by_role("link", name=f"Dead letter {run.dead_letter_id}")).to_be_visible()


async def test_the_overview_charts_dead_letters(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    await setup.dead_lettered("checkout", {"card": "expired"})
    total = 0
    async for _ in _all_entries(setup):
        total += 1
    await _open(page, console, "/overview")
    await expect(page.locator("figure").first).to_contain_text(f"({total} entries)")
    await expect(page.locator("svg.chart")).to_have_count(5)
    await expect(page.locator("#targets")).to_contain_text(setup.worker_target)
    await expect(page.locator("#targets")).to_contain_text(str(total))
    await expect(page.locator("ul.legend").first).to_contain_text("checkout")
    await page.screenshot(path=screenshots / "overview.png", full_page=True)


async def _all_entries(setup: Setup) -> AsyncIterator[dl.DeadLetter]:
    token = ""
    while True:
        page = await setup.harness.dlq.ListDeadLetters(
            dl.ListDeadLettersRequest(page_size=1000, page_token=token)
        )
        for entry in page.dead_letters:
            yield entry
        token = page.next_page_token
        if not token:
            return


async def test_targets_show_the_breaker_and_pause_and_resume(
    page: Page, console: Console, setup: Setup, screenshots: Path
) -> None:
    # The registry learns a target from the calls made to it; main's engine does not report its
    # calls to it yet, so this test reports one successful call itself, as the engine would.
    targets = setup.harness.orchestrator.targets
    targets.admit(setup.worker_target, "console-targets")
    targets.record(setup.worker_target, "console-targets", CallResult())
    await _open(page, console, "/targets?state=closed")
    row = page.locator("tr.target").filter(has_text=setup.worker_target)
    await expect(row).to_contain_text("CLOSED")
    await page.screenshot(path=screenshots / "targets.png", full_page=True)
    await row.get_by_role("link", name=setup.worker_target).click()
    await page.get_by_role("link", name="Pause…").click()
    await page.get_by_label("Reason").fill("PSP maintenance window")
    await page.get_by_label("For").fill("30m")
    await page.get_by_role("button", name="Confirm: pause the target").click()
    await expect(page.get_by_role("status")).to_contain_text("Paused")
    traffic = page.locator("section.pause")
    await expect(traffic).to_contain_text("PSP maintenance window")
    await expect(traffic).to_contain_text("spiffe://failhook.dev/operator")
    await page.screenshot(path=screenshots / "target.png", full_page=True)
    await page.get_by_role("link", name="Resume…").click()
    await page.get_by_label("Release rate").fill("not-a-rate")
    await page.get_by_role("button", name="Confirm: resume the target").click()
    await expect(page.get_by_role("alert")).to_contain_text("rate")
    await page.get_by_label("Release rate").fill("50")
    await page.get_by_role("button", name="Confirm: resume the target").click()
    await expect(page.get_by_role("status")).to_contain_text("Resumed")
    await expect(page.get_by_role("link", name="Pause…")).to_be_visible()
    resumed = await setup.dead_lettered("refund", {"order": "o-after-resume"})  # calls go through again
    assert resumed.state == run_pb2.RUN_STATE_DEAD_LETTERED
