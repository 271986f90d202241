"""Signing in to the console in headless Chromium (Debian's, driven by Playwright), as the
browser tests do: a fresh context, the token typed in, the live badge waited for."""

from playwright.async_api import expect

CHROMIUM = "/usr/bin/chromium"   # scripts/ensure-test-tools.sh installs it (make test)


async def signed_in(browser, base: str, token: str, path: str = "/", *, width: int = 1440,
                    console_errors: bool = False):
    """A page signed in with ``token``; ``page.errors`` collects the page's uncaught errors
    (and, with ``console_errors``, its console errors but the favicon's)."""
    context = await browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if console_errors:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text
                else None)
    await page.goto(base + path)
    await page.fill("[data-testid=token]", token)
    await page.click("[data-testid=sign-in]")
    await expect(page.locator("[data-testid=live]")).to_have_class("live on", timeout=15000)
    page.errors = errors
    return page
