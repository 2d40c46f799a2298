#!/usr/bin/env python3
"""Drives the shardgate dashboard in headless Chromium (Debian's chromium and
chromium-driver, python3-selenium) through the flows an operator uses, and
checks each result the UI shows against the Admin API (with the admin key).

Run by crates/shardgate/tests/dashboard_browser.rs, which starts the gateway,
the game server and the origin, prepares resources, and passes everything in
one JSON file (argv[1]). Prints one `STEP <name> ok` line per flow and, at
the end, `RESULT <json>` with what the pages showed, for the Rust test to
cross-check. Every wait is bounded; the Rust test also bounds the whole run.
"""

import json
import os
import signal
import sys
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

# Seconds any one wait for the page may take (the machine is shared and slow).
WAIT = 20
# Seconds the whole script may take; the Rust test kills it a little later.
SCRIPT_LIMIT = 420

CFG = json.load(open(sys.argv[1]))
BASE = CFG["base"]
RESULT = {}


def log(msg):
    print(msg, flush=True)


def admin_api(method, path, body=None):
    """The Admin API with the admin key: (status, json)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method,
                                 headers={"X-API-KEY": CFG["admin_key"], "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def sel(test):
    return (By.CSS_SELECTOR, f'[data-test="{test}"]')


class Page:
    def __init__(self, driver):
        self.d = driver
        # Pages redraw (polls, reloads): an element found a moment ago may be
        # replaced before it is read; the wait then looks again.
        self.wait = WebDriverWait(driver, WAIT, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))

    def go(self, hash_):
        self.d.get(f"{BASE}/ui/{hash_}")

    def find(self, test):
        return self.wait.until(EC.visibility_of_element_located(sel(test)), f"{test} visible")

    def gone(self, test):
        self.wait.until(EC.invisibility_of_element_located(sel(test)), f"{test} gone")

    def click(self, test):
        el = self.wait.until(EC.element_to_be_clickable(sel(test)), f"{test} clickable")
        self.d.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
        el.click()
        return el

    def fill(self, test, text):
        el = self.find(test)
        el.clear()
        el.send_keys(text)
        return el

    def set_value(self, test, text):
        """Sets a long value (PEM) at once rather than key by key."""
        el = self.find(test)
        self.d.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", el, text)
        return el

    def select(self, test, value):
        from selenium.webdriver.support.ui import Select
        Select(self.find(test)).select_by_value(value)

    def text_of(self, test):
        return self.find(test).text

    def until(self, what, check):
        """Waits until check() returns something truthy; returns it."""
        return self.wait.until(lambda _d: check(), what)

    def shot(self, name):
        path = os.path.join(CFG["screens"], f"{name}.png")
        # Notices of earlier steps would cover the page; no focus ring or
        # hover left over from the last click.
        self.d.execute_script("document.querySelectorAll('.toast').forEach((t) => t.remove());"
                              "if (document.activeElement) document.activeElement.blur();")
        heading = self.d.find_elements(By.CSS_SELECTOR, "main h1")
        if heading:
            ActionChains(self.d).move_to_element(heading[0]).perform()
        # Let charts and fonts settle on the frame.
        time.sleep(0.3)
        self.d.save_screenshot(path)
        log(f"screenshot {path}")

    def session(self):
        """The page's own session (its CSRF token) as the gateway reports it."""
        return self.d.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/ui/api/session', {credentials: 'same-origin'}).then(r => r.json()).then(done, e => done({error: String(e)}));
        """)

    def browser_fetch(self, method, path, body, csrf):
        """A request from the page, with its cookie and the given CSRF token: [status, body]."""
        return self.d.execute_async_script("""
            const [method, path, body, csrf, done] = arguments;
            const headers = {'Content-Type': 'application/json'};
            if (csrf) headers['X-CSRF-Token'] = csrf;
            fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body), credentials: 'same-origin'})
              .then(async r => done([r.status, await r.text()]), e => done([0, String(e)]));
        """, method, path, body, csrf)

    def overflow(self):
        """Horizontal overflow: the document's and every visible element's right edge past the viewport."""
        return self.d.execute_script("""
            const vw = window.innerWidth;
            const bad = [];
            for (const el of document.querySelectorAll('body *')) {
              const r = el.getBoundingClientRect();
              if (r.width === 0 || r.height === 0) continue;
              if (el.closest('#nav:not(.open)') || el.closest('dialog:not([open])')) continue;
              if (r.right > vw + 1) bad.push(`${el.tagName.toLowerCase()}.${el.className} right=${Math.round(r.right)}`);
            }
            return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: vw, offenders: bad.slice(0, 10)};
        """)


def sign_in(p, user, password):
    p.go("")
    p.find("signin-form")
    p.click("signin-tab-password")
    p.fill("signin-user", user)
    p.fill("signin-password", password)
    p.click("signin-submit")


def sign_out(p):
    p.d.find_element(By.ID, "sign-out").click()
    p.find("signin-form")


def step_sign_in(p):
    admin_user, admin_pw = CFG["users"]["admin"]
    # A wrong password: the gateway's message, and still on the sign-in page.
    sign_in(p, admin_user, admin_pw + "-wrong")
    err = p.find("signin-error").text
    assert "wrong username or password" in err, err
    RESULT["wrong_password_message"] = err
    # The right one: the overview, with the user's role.
    p.fill("signin-password", admin_pw)
    p.click("signin-submit")
    p.find("chart-connections")
    role = p.text_of("role")
    assert role == "admin", role
    log("STEP sign_in ok")


def step_overview(p):
    p.go("#/overview")
    # The players the test holds open (others come and go between polls).
    want = str(CFG["connections"])
    p.until(f"active connections {want}", lambda: p.text_of("chart-connections-value") == want)
    RESULT["connections_seen"] = want
    p.until("TLS handshakes/s above zero",
            lambda: p.text_of("chart-handshakes-value") not in ("—", "0"))
    # Requests/s needs two polls with traffic between them.
    p.until("edge requests/s above zero",
            lambda: p.text_of("chart-requests-value") not in ("—", "0"))
    p.until("cache hit ratio shown", lambda: p.text_of("chart-hit-ratio-value").endswith("%"))
    p.until("origin latency shown", lambda: p.text_of("chart-origin-value") != "—")
    # Enough polls for the charts to draw most of their 30 s axis, then the picture.
    time.sleep(24)
    RESULT["overview"] = {name: p.text_of(f"chart-{name}-value") for name in
                          ("connections", "handshakes", "requests", "hit-ratio", "origin")}
    RESULT["tile_stream_routes"] = p.find("tile-stream_routes").text
    p.shot("overview")
    log("STEP overview ok")


def step_upstream(p):
    node = CFG["game_node"]
    p.go("#/upstreams")
    p.click("new-upstreams")
    p.fill("field-id", "gs-ui")
    p.fill("field-name", "game servers (ui)")
    p.fill("field-nodes", f"{node} 1")
    p.fill("field-checks", json.dumps({"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 1},
                                                  "unhealthy": {"interval": 1, "tcp_failures": 2}}}))
    p.click("submit")
    p.find("link-upstreams-gs-ui")
    status, body = admin_api("GET", "/apisix/admin/upstreams/gs-ui")
    assert status == 200, (status, body)
    assert body["value"]["nodes"] == {node: 1}, body
    assert body["value"]["name"] == "game servers (ui)", body
    # The checker finds the node healthy: its badge says so once the list
    # is drawn again (at most once a second).
    deadline = time.time() + WAIT
    while True:
        p.go("#/upstreams")
        badge = p.find(f"node-{node}").text
        if badge.endswith(" healthy") or time.time() > deadline:
            break
        time.sleep(1)
    assert badge.endswith(" healthy"), badge
    RESULT["node_health"] = badge
    log("STEP upstream ok")


def step_invalid_upstream(p):
    p.go("#/upstreams/new")
    p.fill("field-id", "bad-ui")
    p.fill("field-nodes", "127.0.0.1:notaport 1")
    p.click("submit")
    err = p.find("error-nodes").text
    assert "nodes" in err, err
    # Next to the field, not at the top of the form.
    assert not p.d.find_element(*sel("form-error")).is_displayed()
    assert p.find("field-nodes").get_attribute("aria-invalid") == "true"
    RESULT["nodes_error"] = err
    p.shot("upstream-validation")
    # A nested field: the error names checks.active.healthy.interval and
    # shows next to the checks editor.
    p.fill("field-nodes", f"{CFG['game_node']} 1")
    p.fill("field-checks", json.dumps({"active": {"type": "tcp", "healthy": {"interval": 0}}}))
    p.click("submit")
    err2 = p.find("error-checks").text
    assert "checks.active.healthy.interval" in err2, err2
    RESULT["checks_error"] = err2
    status, _ = admin_api("GET", "/apisix/admin/upstreams/bad-ui")
    assert status == 404, status
    log("STEP invalid_upstream ok")


def step_stream_route(p):
    p.go("#/stream_routes")
    p.click("new-stream_routes")
    p.fill("field-id", "gs-ui")
    p.fill("field-name", "game (ui)")
    p.fill("field-sni", CFG["cert"]["snis"][0])
    p.select("field-upstream_id", "gs-ui")
    p.click("submit")
    p.find("stream_routes-table")
    status, body = admin_api("GET", "/apisix/admin/stream_routes/gs-ui")
    assert status == 200, (status, body)
    assert body["value"]["upstream_id"] == "gs-ui", body
    assert body["value"]["sni"] == CFG["cert"]["snis"][0], body
    assert "upstream" not in body["value"], body
    log("STEP stream_route ok")


def step_pagination(p):
    total = CFG["routes_total"]
    p.go("#/stream_routes")
    count = p.find("stream_routes-table-count")
    p.until("route count", lambda: count.text == f"{total:,} total")
    rows = p.d.find_elements(By.CSS_SELECTOR, '[data-test="stream_routes-table"] tbody tr')
    assert len(rows) == 50, len(rows)
    p.click("stream_routes-table-next")
    p.until("page 2", lambda: p.text_of("stream_routes-table-page").startswith("51–100"))
    p.fill("stream_routes-table-search", "gs-ui")
    p.until("search", lambda: p.text_of("stream_routes-table-count") == f"1 of {total:,}")
    rows = p.d.find_elements(By.CSS_SELECTOR, '[data-test="stream_routes-table"] tbody tr')
    assert len(rows) == 1, len(rows)
    p.find("link-stream_routes-gs-ui")
    # Back to the whole list for the picture.
    p.set_value("stream_routes-table-search", "")
    p.until("whole list", lambda: p.text_of("stream_routes-table-count") == f"{total:,} total")
    p.d.execute_script("window.scrollTo(0, 0)")
    p.shot("stream-routes")
    RESULT["routes_count_text"] = f"{total:,} total"
    log("STEP pagination ok")


def step_certificate(p):
    cert = CFG["cert"]
    p.go("#/ssls")
    p.click("new-ssls")
    p.fill("field-id", "gs-ui")
    p.fill("field-snis", ", ".join(cert["snis"]))
    p.set_value("field-cert", cert["cert"])
    p.set_value("field-key", cert["key"])
    p.click("submit")
    p.find("ssls-table")
    expires = p.text_of("expires-gs-ui")
    days = p.text_of("days-gs-ui")
    status, body = admin_api("GET", "/apisix/admin/ssls/gs-ui")
    assert status == 200, (status, body)
    assert body["value"]["snis"] == cert["snis"], body
    assert "key" not in body["value"], "the Admin API must not return the private key"
    # Soonest first: the order of the rows.
    ids = [a.text for a in p.d.find_elements(By.CSS_SELECTOR, '[data-test="ssls-table"] tbody tr td:first-child a')]
    RESULT["ssl"] = {"expires": expires, "days": days, "order": ids}
    p.shot("ssls")
    log("STEP certificate ok")


def step_canary(p):
    cid = CFG["canary"]
    p.go("#/canary")
    p.find(f"canary-{cid}")
    # Staging has served requests (the test's traffic, weighted).
    p.until("staging hits", lambda: p.text_of(f"staging-hits-{cid}").split(" ")[0] not in ("…", "0"))
    p.until("observed share", lambda: "%" in p.text_of(f"observed-{cid}"))
    RESULT["staging_hits_text"] = p.text_of(f"staging-hits-{cid}")
    RESULT["split_before"] = p.text_of("split")
    p.shot("canary")
    weight = p.fill(f"weight-input-{cid}", "20")
    weight.send_keys("")
    p.click(f"weight-apply-{cid}")
    p.until("weight stored", lambda: admin_api("GET", f"/apisix/admin/continuous_deployment_policies/{cid}")[1]
            ["value"]["traffic"].get("weight") == 0.2)
    p.until("split shows 20 %", lambda: "Staging 20 %" in p.text_of("split"))
    RESULT["split_after"] = p.text_of("split")
    # Promote, after the confirmation dialog: first cancel, nothing happens.
    p.click(f"promote-{cid}")
    p.click("confirm-cancel")
    time.sleep(0.5)
    _, pol = admin_api("GET", f"/apisix/admin/continuous_deployment_policies/{cid}")
    assert pol["value"]["enabled"] is True, pol
    p.click(f"promote-{cid}")
    dialog = p.find("confirm-ok")
    RESULT["promote_dialog"] = p.d.find_element(By.CSS_SELECTOR, "dialog .dialog-message").text
    dialog.click()
    p.until("policy disabled by the promote",
            lambda: admin_api("GET", f"/apisix/admin/continuous_deployment_policies/{cid}")[1]["value"]["enabled"] is False)
    p.until("card shows disabled", lambda: "disabled" in p.text_of(f"canary-{cid}"))
    log("STEP canary ok")


def step_web_acl(p):
    acl = CFG["acl"]
    rule = CFG["acl_rule"]
    p.go(f"#/web_acls/{acl}")
    p.find("rules-table")
    # The test keeps sending requests the rule blocks; show that rule's samples.
    p.select("samples-rule", rule)
    uri = CFG["blocked_path"]
    p.until("a blocked request is sampled", lambda: uri in p.find("samples-table").text)
    p.until("rule counter", lambda: p.text_of(f"rule-count-{rule}") not in ("…", "0"))
    rows = p.d.find_elements(By.CSS_SELECTOR, '[data-test="samples-table"] tbody tr')
    RESULT["sample_rows"] = [r.text for r in rows]
    RESULT["rule_count"] = p.text_of(f"rule-count-{rule}")
    p.until("rule rate", lambda: p.text_of(f"rule-rate-{rule}").endswith("/s"))
    status, body = admin_api("GET", f"/apisix/admin/web_acls/{acl}/sampled_requests")
    assert status == 200 and any(s["Request"]["URI"].startswith(uri) and s["Action"] == "BLOCK"
                                 for s in body["SampledRequests"]), body
    p.shot("web-acl-samples")
    log("STEP web_acl ok")


def step_invalidation(p):
    p.go("#/invalidations")
    p.select("field-distribution_id", CFG["distribution"])
    p.fill("field-paths", "/example.file, /patch/*")
    p.fill("field-caller_reference", "ui test")
    p.click("submit")
    p.until("invalidation listed", lambda: "ui test" in p.find("invalidations-table").text)
    p.until("invalidation completed", lambda: "Completed" in
            [r for r in p.d.find_elements(By.CSS_SELECTOR, '[data-test="invalidations-table"] tbody tr') if "ui test" in r.text][0].text)
    _, body = admin_api("GET", "/apisix/admin/invalidations")
    mine = [i for i in body["list"] if i["value"].get("caller_reference") == "ui test"]
    assert len(mine) == 1 and mine[0]["value"]["paths"] == ["/example.file", "/patch/*"], body
    assert mine[0]["value"]["status"] == "Completed", mine
    log("STEP invalidation ok")


def step_read_only(p):
    sign_out(p)
    user, pw = CFG["users"]["viewer"]
    sign_in(p, user, pw)
    p.find("chart-connections")
    assert p.text_of("role") == "read-only", p.text_of("role")
    checks = {
        "#/stream_routes": ["new-stream_routes", "edit-gs-ui", "delete-gs-ui"],
        "#/upstreams": ["new-upstreams", "edit-gs-ui", "delete-gs-ui"],
        "#/ssls": ["new-ssls", "delete-gs-ui"],
        "#/canary": [f"weight-apply-{CFG['canary']}", f"promote-{CFG['canary']}", f"discard-{CFG['canary']}", "new-canary"],
        f"#/web_acls/{CFG['acl']}": ["edit-acl"],
        "#/invalidations": ["invalidation-form"],
    }
    seen = {}
    for page, tests in checks.items():
        p.go(page)
        # The page has drawn (its table or card) before looking for buttons.
        p.until(f"{page} drawn", lambda: p.d.find_elements(By.CSS_SELECTOR, "main .page-head"))
        time.sleep(0.5)
        for t in tests:
            found = p.d.find_elements(*sel(t))
            assert not found, f"{page}: a read-only user sees {t}"
        seen[page] = len(p.d.find_elements(By.CSS_SELECTOR, "main button.btn-danger, main .btn-primary"))
        assert seen[page] == 0, f"{page}: write buttons {seen[page]}"
    # A write from this session fails, with its CSRF token and all.
    s = p.session()
    assert s.get("role") == "viewer", s
    status, body = p.browser_fetch("PUT", "/apisix/admin/upstreams/viewer-write", {"nodes": {CFG["game_node"]: 1}}, s["csrf"])
    RESULT["viewer_write"] = [status, body]
    assert status in (401, 403), (status, body)
    assert admin_api("GET", "/apisix/admin/upstreams/viewer-write")[0] == 404
    log("STEP read_only ok")


def step_phone(p):
    p.d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                        {"width": 375, "height": 812, "deviceScaleFactor": 1, "mobile": True})
    widths = {}
    pages = ["#/overview", "#/stream_routes", "#/upstreams", "#/ssls", "#/distributions", "#/cache_policies",
             "#/canary", "#/invalidations", "#/web_acls", f"#/web_acls/{CFG['acl']}", "#/stream_routes/gs-ui"]
    for page in pages:
        p.go(page)
        p.until(f"{page} drawn", lambda: p.d.find_elements(By.CSS_SELECTOR, "main .page-head"))
        time.sleep(0.7)
        o = p.overflow()
        widths[page] = o
        assert o["innerWidth"] == 375, o
        assert o["scrollWidth"] <= o["innerWidth"], f"{page}: page wider than the phone: {o}"
        assert not o["offenders"], f"{page}: elements past the right edge: {o}"
    # The navigation is folded away and opens from the menu button.
    p.go("#/stream_routes")
    nav = p.d.find_element(By.ID, "nav")
    assert nav.rect["x"] + nav.rect["width"] <= 0, nav.rect
    p.d.find_element(By.ID, "nav-toggle").click()
    p.until("nav open", lambda: nav.rect["x"] >= 0)
    p.shot("phone-nav")
    p.d.find_element(By.CSS_SELECTOR, '#nav a[data-page="upstreams"]').click()
    p.until("nav closed", lambda: nav.rect["x"] + nav.rect["width"] <= 0)
    p.go("#/stream_routes")
    p.find("stream_routes-table")
    p.shot("phone-stream-routes")
    RESULT["phone"] = widths
    log("STEP phone ok")


def main():
    signal.alarm(SCRIPT_LIMIT)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--force-device-scale-factor=1", "--lang=en-US",
                "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.binary_location = CFG.get("chromium", "/usr/bin/chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CFG.get("chromedriver", "/usr/bin/chromedriver")), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    p = Page(driver)
    steps = [step_sign_in, step_overview, step_upstream, step_invalid_upstream, step_stream_route,
             step_pagination, step_certificate, step_web_acl, step_canary, step_invalidation,
             step_read_only, step_phone]
    only = os.environ.get("DASHBOARD_STEPS")
    console = []
    try:
        for s in steps:
            if only and s.__name__ not in only.split(","):
                continue
            s(p)
            console += driver.get_log("browser")
        # The pages ran without a script error and without anything the
        # Content-Security-Policy refused (an inline style or script).
        # Failed requests (a wrong password, a 400) are logged too: expected.
        bad = [e["message"] for e in console
               if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]
        assert not bad, f"console errors: {bad}"
        RESULT["console_messages"] = len(console)
        log("RESULT " + json.dumps(RESULT))
    except Exception as e:
        # Selenium's messages carry chromedriver's native stack: keep the first line.
        message = getattr(e, "msg", None) or str(e)
        log(f"FAILED in the browser: {type(e).__name__}: {message.splitlines()[0] if message else ''}")
        traceback.print_tb(e.__traceback__, file=sys.stdout)
        try:
            p.shot("failure")
            for entry in driver.get_log("browser"):
                log(f"console: {entry.get('level')} {entry.get('message')}")
            log("page text: " + driver.find_element(By.TAG_NAME, "body").text[:2000])
        except Exception as e2:  # the browser itself may be gone
            log(f"(no failure details: {e2})")
        sys.exit(1)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
