"""A second process that approves (or denies) a device login through the /device page over real
HTTP, as a person at a browser would: sign in with email and password, enter the user code,
press Approve. Used by test_login_e2e.py.

    python device_approver.py URL EMAIL CODE approve|deny   (the password on stdin)

Exit 0 when the page says the device was connected (or denied); 1 with the page's text otherwise.
"""

from __future__ import annotations

import re
import sys

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    if found is None:
        raise SystemExit(
            f"no CSRF field on {page.url} (HTTP {page.status_code}):\n{page.text[:2000]}"
        )
    return found.group(1)


def approve(url: str, email: str, password: str, code: str, action: str) -> str:
    """Sign in, look the code up, press the button; the final page's text."""
    origin = {"Origin": url}
    with httpx.Client(base_url=url, follow_redirects=False, timeout=10, trust_env=False) as web:
        page = web.get("/login", params={"next": "/device"})
        signed = web.post(
            "/login",
            data={"csrf": _csrf(page), "next": "/device", "email": email, "password": password},
            headers=origin,
        )
        if signed.status_code != 303:
            raise SystemExit(f"sign-in refused (HTTP {signed.status_code}):\n{signed.text[:2000]}")
        page = web.get("/device", params={"user_code": code})
        confirm = web.post(
            "/device",
            data={"csrf": _csrf(page), "user_code": code, "action": "lookup"},
            headers=origin,
        )
        if confirm.status_code != 200 or "Approve" not in confirm.text:
            raise SystemExit(
                f"code not accepted (HTTP {confirm.status_code}):\n{confirm.text[:2000]}"
            )
        done = web.post(
            "/device",
            data={"csrf": _csrf(confirm), "user_code": code, "action": action},
            headers=origin,
        )
        if done.status_code != 200:
            raise SystemExit(f"{action} failed (HTTP {done.status_code}):\n{done.text[:2000]}")
        return done.text


if __name__ == "__main__":
    base, who, user_code, what = sys.argv[1:5]
    text = approve(base, who, sys.stdin.readline().rstrip("\n"), user_code, what)
    want = "Device connected" if what == "approve" else "Request denied"
    if want not in text:
        raise SystemExit(f"the page did not say {want!r}:\n{text[:2000]}")
    print(want)
