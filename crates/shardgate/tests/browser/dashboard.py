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
import threading
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

    def open(self, hash_):
        """Goes to a page and waits until that page (not the one before, not
        the loading placeholder) is drawn: app.js sets <main data-route> then."""
        self.go(hash_)
        self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'main[data-route="{hash_}"]')),
                        f"{hash_} drawn")

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

    def find_css(self, css):
        return self.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), f"{css} visible")

    def text_of(self, test):
        return self.find(test).text

    def until(self, what, check, timeout=WAIT):
        """Waits until check() returns something truthy; returns it."""
        wait = self.wait if timeout == WAIT else WebDriverWait(
            self.d, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
        return wait.until(lambda _d: check(), what)

    def stays(self, what, check, seconds):
        """Checks for `seconds` that check() keeps holding (something that must not happen)."""
        end = time.time() + seconds
        while True:
            assert check(), what
            if time.time() > end:
                return
            time.sleep(0.2)

    def watch(self):
        """Wraps the page's fetch (once per document): logs every request the
        page makes, and can hold requests matching `hold` before they are sent
        (`sends`) or after they were answered (`answers`) until released."""
        self.d.execute_script("""
            if (window.__watch) return;
            const w = window.__watch = {log: [], hold: null};
            const plain = window.fetch;
            window.fetch = async function (input, init) {
              const url = typeof input === 'string' ? input : input.url;
              const method = (init && init.method) || 'GET';
              w.log.push({url, method, t: performance.now()});
              const h = w.hold;
              const held = h && url.includes(h.url) && (!h.writes || method !== 'GET') ? h : null;
              if (held && held.send) await new Promise((go) => held.sends.push(go));
              const answer = await plain.call(window, input, init);
              if (held) await new Promise((go) => held.answers.push(go));
              return answer;
            };
        """)

    def hold(self, url, writes=False, send=False):
        self.watch()
        self.d.execute_script("window.__watch.hold = {url: arguments[0], writes: arguments[1], send: arguments[2], sends: [], answers: []}",
                              url, writes, send)

    def held(self, which):
        return self.d.execute_script("return window.__watch.hold[arguments[0]].length", which)

    def release(self, which="answers", end=True):
        """Lets the held requests go on; with `end`, holds nothing more."""
        self.d.execute_script("""
            const h = window.__watch.hold;
            for (const go of h[arguments[0]].splice(0)) go();
            if (arguments[1]) window.__watch.hold = null;
        """, which, end)

    def now(self):
        """The page's clock (performance.now(), ms), to mark a moment."""
        return self.d.execute_script("return performance.now()")

    def stats_polls(self, since=0):
        """When (page ms) the page asked /ui/api/stats since `since`."""
        return self.d.execute_script(
            "return window.__watch.log.filter((r) => r.url.startsWith('/ui/api/stats') && r.t >= arguments[0]).map((r) => r.t)",
            since)

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
    fill_sign_in(p, user, password)


def fill_sign_in(p, user, password):
    """Signs in with the form already shown (the document is not reloaded)."""
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
    # Hashes that name no page: a bad percent-escape and a name every
    # object has (Object.prototype's): the "no page" box, no script error.
    for bad in ("#/x/%E0", "#/constructor", "#/__proto__"):
        p.open(bad)
        box = p.find_css("main .error-box").text
        assert box.startswith("There is no page"), (bad, box)
    log("STEP sign_in ok")


def step_overview(p):
    p.open("#/overview")
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
    # Enough polls for the charts to draw most of their 30 s axis (a poll
    # every 2 s), then the picture.
    for chart in ("chart-connections", "chart-requests"):
        p.until(f"{chart} holds 12 samples",
                lambda: int(p.find(chart).get_attribute("data-points") or 0) >= 12, timeout=90)
    RESULT["overview"] = {name: p.text_of(f"chart-{name}-value") for name in
                          ("connections", "handshakes", "requests", "hit-ratio", "origin")}
    RESULT["tile_stream_routes"] = p.find("tile-stream_routes").text
    p.shot("overview")
    log("STEP overview ok")


def step_upstream(p):
    node = CFG["game_node"]
    p.open("#/upstreams")
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
        # Away and back: going to the hash already shown draws nothing again.
        p.open("#/cache_policies")
        p.open("#/upstreams")
        badge = p.find(f"node-{node}").text
        if badge.endswith(" healthy") or time.time() > deadline:
            break
        time.sleep(1)
    assert badge.endswith(" healthy"), badge
    RESULT["node_health"] = badge
    log("STEP upstream ok")


def step_invalid_upstream(p):
    p.open("#/upstreams/new")
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
    p.open("#/stream_routes")
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
    p.open("#/stream_routes")
    count = p.find("stream_routes-table-count")
    p.until("route count", lambda: count.text == f"{total:,} total")
    rows = p.d.find_elements(By.CSS_SELECTOR, '[data-test="stream_routes-table"] tbody tr')
    assert len(rows) == 50, len(rows)
    p.click("stream_routes-table-next")
    p.until("page 2", lambda: p.text_of("stream_routes-table-page").startswith("51–100"))
    # On to the last page: its rows, and Next disabled there.
    pages = (total + 49) // 50
    last = f"{(pages - 1) * 50 + 1:,}–{total:,} · page {pages} of {pages}"
    for n in range(3, pages + 1):
        p.click("stream_routes-table-next")
        p.until(f"page {n}", lambda: p.text_of("stream_routes-table-page").endswith(f"page {n} of {pages}"))
    assert p.text_of("stream_routes-table-page") == last, (p.text_of("stream_routes-table-page"), last)
    rows = p.d.find_elements(By.CSS_SELECTOR, '[data-test="stream_routes-table"] tbody tr')
    assert len(rows) == total - (pages - 1) * 50, len(rows)
    assert not p.find("stream_routes-table-next").is_enabled(), "Next enabled on the last page"
    assert p.find("stream_routes-table-prev").is_enabled(), "Previous disabled on the last page"
    RESULT["last_page_text"] = last
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
    p.open("#/ssls")
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


def policy(cid):
    return admin_api("GET", f"/apisix/admin/continuous_deployment_policies/{cid}")[1]["value"]


def step_canary(p):
    cid = CFG["canary"]
    p.open("#/canary")
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
    p.until("weight stored", lambda: policy(cid)["traffic"].get("weight") == 0.2)
    p.until("split shows 20 %", lambda: "Staging 20 %" in p.text_of("split"))
    RESULT["split_after"] = p.text_of("split")

    # Leaving right after an action: the answer arrives once another page is
    # shown, and the reload it starts must not poll for the page left.
    p.hold(f"continuous_deployment_policies/{cid}", writes=True)
    p.fill(f"weight-input-{cid}", "20")
    p.click(f"weight-apply-{cid}")
    p.until("the weight's answer held", lambda: p.held("answers") == 1)
    p.open("#/ssls")
    left = p.now()
    p.d.execute_script("document.querySelectorAll('.toast').forEach((t) => t.remove())")
    p.release()
    p.until("the weight's notice", lambda: "20 % of requests go to staging" in
            p.d.find_element(By.ID, "toasts").text)
    p.stays("no stats poll after leaving the canary page", lambda: not p.stats_polls(left), 5)

    # A confirmation open when the page is left is cancelled, not left to act later.
    p.open("#/canary")
    p.click(f"promote-{cid}")
    p.find("confirm-ok")
    p.d.execute_script("location.hash = '#/ssls'")
    p.until("no dialog open after leaving", lambda: not p.d.find_elements(By.CSS_SELECTOR, "dialog[open], dialog"))
    assert policy(cid)["enabled"] is True

    # Promote, after the confirmation dialog: first cancel, nothing happens.
    p.open("#/canary")
    p.click(f"promote-{cid}")
    p.click("confirm-cancel")
    p.gone("confirm-cancel")
    p.stays("cancel promoted nothing", lambda: policy(cid)["enabled"] is True, 2)

    # Two quick actions, apply then promote, whose answers arrive together:
    # both reload the page, and one stats poll runs afterwards, not two.
    p.hold(f"continuous_deployment_policies/{cid}", writes=True)
    p.fill(f"weight-input-{cid}", "20")
    p.click(f"weight-apply-{cid}")
    p.until("the weight's answer held", lambda: p.held("answers") == 1)
    p.click(f"promote-{cid}")
    dialog = p.find("confirm-ok")
    RESULT["promote_dialog"] = p.d.find_element(By.CSS_SELECTOR, "dialog .dialog-message").text
    dialog.click()
    p.until("the promote's answer held", lambda: p.held("answers") == 2)
    assert policy(cid)["enabled"] is False, "the promote came after the weight"
    p.release()
    p.until("card shows disabled", lambda: "disabled" in p.text_of(f"canary-{cid}"))
    time.sleep(1)
    since = p.now()
    p.until("three polls", lambda: len(p.stats_polls(since)) >= 3, timeout=30)
    polls = p.stats_polls(since)
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    # One poll asks 2 s after the last answer; a second one would ask in between.
    assert min(gaps) >= 1900, f"more than one stats poll running: requests {gaps} ms apart"
    RESULT["canary_poll_gaps_ms"] = [round(g) for g in gaps]
    log("STEP canary ok")


def step_web_acl(p):
    acl = CFG["acl"]
    rule = CFG["acl_rule"]
    p.open(f"#/web_acls/{acl}")
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
    p.open("#/invalidations")
    p.select("field-distribution_id", CFG["distribution"])
    p.fill("field-paths", "/example.file, /patch/*")
    p.fill("field-caller_reference", "ui test")
    p.click("submit")
    p.until("invalidation listed", lambda: "ui test" in p.find("invalidations-table").text)
    p.until("invalidation completed", lambda: "Completed" in
            [r for r in p.d.find_elements(By.CSS_SELECTOR, '[data-test="invalidations-table"] tbody tr:not(.empty)') if "ui test" in r.text][0].text)
    _, body = admin_api("GET", "/apisix/admin/invalidations")
    mine = [i for i in body["list"] if i["value"].get("caller_reference") == "ui test"]
    assert len(mine) == 1 and mine[0]["value"]["paths"] == ["/example.file", "/patch/*"], body
    assert mine[0]["value"]["status"] == "Completed", mine
    log("STEP invalidation ok")


def step_session_ends(p):
    admin_user, admin_pw = CFG["users"]["admin"]
    # The session ends from outside (another tab signs out) while the
    # overview polls: its next poll is refused, and the page goes back to
    # sign-in saying why, and polls no more.
    p.open("#/overview")
    p.watch()
    start = p.now()
    p.until("the overview polls", lambda: p.stats_polls(start))
    s = p.session()
    status, body = p.browser_fetch("POST", "/ui/api/logout", {}, s["csrf"])
    assert status == 200, (status, body)
    reason = p.text_of("signin-reason")
    assert "session ended" in reason and "not signed in" in reason, reason
    RESULT["session_end_reason"] = reason
    ended = p.now()
    p.stays("no stats poll once the session ended", lambda: not p.stats_polls(ended), 5)

    # A request made in the old session whose 401 arrives after a new
    # sign-in says nothing about the new session: it stays.
    fill_sign_in(p, admin_user, admin_pw)
    p.find("chart-connections")
    p.hold("stale=1", send=True)
    p.d.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/ui/assets/api.js').then((api) => {
          window.__stale = null;
          api.dashboard('stats?stale=1').then(() => { window.__stale = 200; }, (e) => { window.__stale = e.status; });
          done(true);
        }, (e) => done(String(e)));
    """)
    p.until("the old session's request waits", lambda: p.held("sends") == 1)
    # Sign-out stops the overview's poll at once.
    sign_out(p)
    out = p.now()
    p.stays("no stats poll after sign-out", lambda: not p.stats_polls(out), 5)
    p.release("sends", end=False)
    p.until("the old session's request was refused", lambda: p.held("answers") == 1)
    fill_sign_in(p, admin_user, admin_pw)
    p.find("chart-connections")
    p.release()
    p.until("the stale answer arrived", lambda: p.d.execute_script("return window.__stale") == 401)
    again = p.now()
    p.until("the new session polls", lambda: len(p.stats_polls(again)) >= 2, timeout=30)
    assert not p.d.find_elements(*sel("signin-form")), "a stale 401 ended the new session"
    assert p.text_of("role") == "admin"
    log("STEP session_ends ok")


def write_controls(p):
    """Each page with write controls, drawn with the row its controls belong
    to: {page: {control: shown}}. Row controls are looked for in their row."""
    cid, acl, rule = CFG["canary"], CFG["acl"], CFG["acl_rule"]

    def row(table, kind):
        return f'[data-test="{table}"] tr:has([data-test="link-{kind}-gs-ui"])'

    pages = [
        # (page, search box or None, row CSS, controls in the row, controls on the page)
        ("#/stream_routes", "stream_routes-table-search", row("stream_routes-table", "stream_routes"),
         ["edit-gs-ui", "delete-gs-ui"], ["new-stream_routes"]),
        ("#/upstreams", "upstreams-table-search", row("upstreams-table", "upstreams"),
         ["edit-gs-ui", "delete-gs-ui"], ["new-upstreams"]),
        ("#/ssls", "ssls-table-search", row("ssls-table", "ssls"), ["edit-gs-ui", "delete-gs-ui"], ["new-ssls"]),
        ("#/canary", None, f'[data-test="canary-{cid}"]',
         [f"weight-apply-{cid}", f"weight-input-{cid}", f"promote-{cid}", f"discard-{cid}", f"edit-{cid}"], ["new-canary"]),
        (f"#/web_acls/{acl}", None, f'[data-test="rules-table"] tr:has([data-test="rule-count-{rule}"])',
         [], ["edit-acl", f"delete-{acl}"]),
        ("#/invalidations", None, '[data-test="invalidations-table"] tbody tr:not(.empty)', [], ["invalidation-form"]),
    ]
    seen = {}
    for page, search, row_css, in_row, on_page in pages:
        p.open(page)
        if search:
            p.fill(search, "gs-ui")
        # The page's own row, not the page before's heading or "Loading…".
        row_el = p.find_css(row_css)
        shown = {t: bool(row_el.find_elements(*sel(t))) for t in in_row}
        shown.update({t: bool(p.d.find_elements(By.CSS_SELECTOR, f'main [data-test="{t}"]')) for t in on_page})
        shown["danger or primary buttons"] = bool(
            p.d.find_elements(By.CSS_SELECTOR, "main button.btn-danger, main .btn-primary"))
        seen[page] = shown
    return seen


def step_admin_controls(p):
    # The control for the read-only check: an admin sees every write
    # control the viewer must not.
    seen = write_controls(p)
    missing = {page: [t for t, on in shown.items() if not on] for page, shown in seen.items()}
    assert not any(missing.values()), f"an admin misses write controls: {missing}"
    RESULT["admin_controls"] = seen
    log("STEP admin_controls ok")


def step_read_only(p):
    sign_out(p)
    user, pw = CFG["users"]["viewer"]
    sign_in(p, user, pw)
    p.find("chart-connections")
    assert p.text_of("role") == "read-only", p.text_of("role")
    seen = write_controls(p)
    shown = {page: [t for t, on in c.items() if on] for page, c in seen.items()}
    assert not any(shown.values()), f"a read-only user sees write controls: {shown}"
    RESULT["viewer_controls"] = seen
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
        p.open(page)
        # Let late content (counts, samples) take its place before measuring.
        time.sleep(0.7)
        o = p.overflow()
        widths[page] = o
        assert o["innerWidth"] == 375, o
        assert o["scrollWidth"] <= o["innerWidth"], f"{page}: page wider than the phone: {o}"
        assert not o["offenders"], f"{page}: elements past the right edge: {o}"
    # The navigation is folded away and opens from the menu button.
    p.open("#/stream_routes")
    nav = p.d.find_element(By.ID, "nav")
    assert nav.rect["x"] + nav.rect["width"] <= 0, nav.rect
    p.d.find_element(By.ID, "nav-toggle").click()
    p.until("nav open", lambda: nav.rect["x"] >= 0)
    p.shot("phone-nav")
    p.d.find_element(By.CSS_SELECTOR, '#nav a[data-page="upstreams"]').click()
    p.until("nav closed", lambda: nav.rect["x"] + nav.rect["width"] <= 0)
    p.open("#/stream_routes")
    p.find("stream_routes-table")
    p.shot("phone-stream-routes")
    RESULT["phone"] = widths
    log("STEP phone ok")


class ScriptTimeout(Exception):
    pass


def on_alarm(_sig, _frame):
    # Raised in the main thread wherever it waits, so `finally` quits the
    # browser (SIGALRM's default action would end the script without it).
    raise ScriptTimeout(f"the browser script ran longer than {SCRIPT_LIMIT} s")


def watch_parent():
    """Ends the script when the process that started it is gone (the Rust
    test was killed): first as a timeout (so `finally` quits the browser),
    then, if that does not end it, the script's own process group."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(1)
    log("the test that started this script is gone: stopping")
    signal.pthread_kill(threading.main_thread().ident, signal.SIGALRM)
    time.sleep(15)
    if os.getpgid(0) == os.getpid():
        # The Rust test makes the script its group's leader: the group is
        # exactly the script, chromedriver and Chromium.
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(2)


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(SCRIPT_LIMIT)
    threading.Thread(target=watch_parent, daemon=True, name="watch-parent").start()
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
             step_session_ends, step_admin_controls, step_read_only, step_phone]
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
    except Exception as e:  # ScriptTimeout too
        # The report below is bounded too; a timeout there goes to `finally`.
        signal.alarm(30)
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
        # Chromium and chromedriver end with the script, however it ends.
        signal.alarm(30)
        driver.quit()
        signal.alarm(0)


if __name__ == "__main__":
    main()
