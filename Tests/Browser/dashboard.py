#!/usr/bin/env python3
"""The dashboard in a real browser (Debian's chromium and chromium-driver, Selenium), as a person uses it.

Run by DashboardBrowserTests with a live gateway and its builds:
  BUILDGATE_URL          the gateway
  BUILDGATE_TOKEN        an API token of the tenant whose builds are shown
  BUILDGATE_RUNNING      a build that is running and prints a line a second for a while, then succeeds
  BUILDGATE_TO_CANCEL    another running build, to cancel from its page
  BUILDGATE_FOREIGN      a build of another tenant (must answer 404)
  BUILDGATE_ARTIFACTS    where screenshots go: every page on failure, and dashboard-*.png always
  BUILDGATE_GATE_PORT    a loopback port for the gate the two running builds poll (GET /go/NAME, 404 until this
                         script releases NAME): they run until the page has shown what it must, however slow
                         the machine
Prints one line per step and 'N passed, N failed'; exits non-zero on a failure.
"""
import http.server
import os
import sys
import threading
import traceback

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

released = set()


class Gate(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        self.send_response(200 if name in released else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *arguments):
        pass


gate = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["BUILDGATE_GATE_PORT"])), Gate)
threading.Thread(target=gate.serve_forever, daemon=True).start()

url = os.environ["BUILDGATE_URL"].rstrip("/")
artifacts = os.environ["BUILDGATE_ARTIFACTS"]
os.makedirs(artifacts, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 120, poll_frequency=0.2)
passed, failed = 0, 0


def step(name, body):
    global passed, failed
    try:
        body()
        passed += 1
        print(f"ok: {name}", flush=True)
    except Exception:
        failed += 1
        print(f"FAILED: {name}\n{traceback.format_exc()}", flush=True)
        driver.save_screenshot(os.path.join(artifacts, f"failed-{name.replace(' ', '-')}.png"))
        with open(os.path.join(artifacts, f"failed-{name.replace(' ', '-')}.html"), "w") as page:
            page.write(driver.page_source)


def sign_in():
    driver.get(url + "/ui/builds")
    wait.until(lambda d: d.current_url.endswith("/ui/sign-in"))
    driver.find_element(By.ID, "token").send_keys(os.environ["BUILDGATE_TOKEN"])
    driver.find_element(By.CSS_SELECTOR, "form[action='/ui/sign-in'] button").click()
    wait.until(lambda d: d.current_url.endswith("/ui/builds"))
    assert driver.find_element(By.CSS_SELECTOR, f"tr[data-build-id='{os.environ['BUILDGATE_RUNNING']}']")
    cookie = driver.get_cookie("bg_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert os.environ["BUILDGATE_TOKEN"] not in driver.current_url


def status():
    return driver.find_element(By.ID, "build-status").text


def live_log():
    driver.get(url + "/ui/builds/" + os.environ["BUILDGATE_RUNNING"])
    # Lines the build prints after the page was served arrive while it runs.
    first = len(driver.find_elements(By.CSS_SELECTOR, "#log .line"))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log .line")) > first + 2)
    assert status() in ("running", "starting"), status()
    assert "tick-" in driver.find_element(By.ID, "log").text
    driver.save_screenshot(os.path.join(artifacts, "dashboard-build.png"))
    released.add("watched")


def turns_succeeded():
    # The same page, not reloaded: the status changes when the build ends.
    marker = driver.execute_script("window.notReloaded = true; return window.notReloaded")
    wait.until(lambda d: status() == "succeeded")
    assert driver.execute_script("return window.notReloaded") is marker is True
    assert "[buildgate] result: succeeded" in driver.find_element(By.ID, "log").text
    assert not driver.find_elements(By.ID, "cancel")


def cancels():
    driver.get(url + "/ui/builds/" + os.environ["BUILDGATE_TO_CANCEL"])
    driver.find_element(By.ID, "cancel").click()
    # The gateway has taken the cancel once the build's log says so (the page shows it live); Podman finishes the
    # step it was running before it stops, so only then is the step let go.
    wait.until(lambda d: "cancellation requested" in d.find_element(By.ID, "log").text)
    released.add("cancel")
    wait.until(lambda d: status() == "cancelled")


def builds_list():
    driver.get(url + "/ui/builds")
    rows = driver.find_elements(By.CSS_SELECTOR, "#builds tbody tr")
    assert len(rows) >= 2
    driver.save_screenshot(os.path.join(artifacts, "dashboard-builds.png"))
    driver.get(url + "/ui/builders")
    assert "test-podman" in driver.page_source


def foreign_is_404():
    driver.get(url + "/ui/builds/" + os.environ["BUILDGATE_FOREIGN"])
    assert driver.find_element(By.TAG_NAME, "h1").text == "404", driver.page_source


try:
    step("sign in", sign_in)
    step("log lines appear before the build ends", live_log)
    step("status turns succeeded without a reload", turns_succeeded)
    step("cancel a running build", cancels)
    step("the builds list and builders", builds_list)
    step("another tenant's build is 404", foreign_is_404)
finally:
    released.update(["watched", "cancel"])
    driver.quit()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
