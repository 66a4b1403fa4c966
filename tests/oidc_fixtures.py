# SPDX-License-Identifier: AGPL-3.0-or-later
"""LemonLDAP::NG from Debian as the OpenID provider of the tests (pytest plugin).

What French administrations run, written by nobody here: its portal (``liblemonldap-ng-portal
-perl``) is served by ``plackup`` on a free loopback port, configured in a temporary directory
(``lemonldap-ng.ini`` chosen by ``LLNG_DEFAULTCONFFILE``, a File configuration backend), with
an RSA key pair of its own and one relying party, the appliance's Synapse.  People live in an
SQLite table (its ``DBI`` backend): :meth:`LemonLdap.add_person` adds one, who can sign in at
once through the portal's own login form.

The claims it releases are those of an administration's provider: ``email``,
``email_verified`` (a JSON boolean), ``given_name``, ``family_name``, and ProConnect's
``usual_name`` (the same family name), so a test can point the appliance at either spelling.

Installed by ``scripts/install-system-packages --with-test-packages``; a missing package is a
failure (never a skip): the feature would go untested.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from harness import evaluation_settings, free_port
from matrix_helpers import SideSynapse, wait_for_allowlist
from playwright.sync_api import Browser, sync_playwright

from appliance.config.layout import Layout
from appliance.config.settings import Settings
from appliance.synapse_module.accounts.registration import SSO_PROVIDER_ID

PLACKUP = "/usr/bin/plackup"
PORTAL_TEMPLATES = Path("/usr/share/lemonldap-ng/portal/templates")
PORTAL_STATIC = Path("/usr/share/lemonldap-ng/portal/htdocs/static")
DEBIAN_JAVASCRIPT = Path("/usr/share/javascript")
READY_TIMEOUT = 60.0

CLIENT_ID = "appliance-synapse"

_PSGI = """\
use Plack::Builder;
use Plack::App::File;
use Lemonldap::NG::Portal::Main;
my $portal = Lemonldap::NG::Portal::Main->run({});
builder {
    mount '/static' => Plack::App::File->new(root => '%(static)s')->to_app;
    mount '/javascript' => Plack::App::File->new(root => '%(javascript)s')->to_app;
    mount '/' => $portal;
};
"""


@dataclass(frozen=True)
class IdpPerson:
    login: str
    password: str
    email: str


class LemonLdap:
    """A running LemonLDAP::NG portal acting as an OpenID provider for one relying party."""

    def __init__(self, directory: Path, redirect_uri: str):
        self.directory = directory
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.redirect_uri = redirect_uri
        self.client_secret = os.urandom(24).hex()
        self.client_secret_file = directory / "client_secret"
        self.users_db = directory / "users.sqlite3"
        self._process: subprocess.Popen | None = None

    # --- set-up ---------------------------------------------------------------------------
    def start(self) -> LemonLdap:
        missing = [p for p in (PLACKUP, PORTAL_TEMPLATES) if not Path(p).exists()]
        if missing:
            pytest.fail(
                f"LemonLDAP::NG is not installed ({', '.join(map(str, missing))}): run "
                "`scripts/install-system-packages --with-test-packages` as root"
            )
        self._write_files()
        log = (self.directory / "portal.log").open("wb")
        env = {**os.environ, "LLNG_DEFAULTCONFFILE": str(self.directory / "lemonldap-ng.ini")}
        self._process = subprocess.Popen(
            [PLACKUP, "-s", "HTTP::Server::PSGI", "--host", "127.0.0.1", "--port",
             str(self.port), str(self.directory / "portal.psgi")],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory,
        )  # fmt: skip
        self._wait_ready()
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        url = f"{self.issuer}/.well-known/openid-configuration"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"LemonLDAP::NG exited:\n{self.log_tail()}")
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"LemonLDAP::NG did not answer in {READY_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.directory / "portal.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _write_files(self) -> None:
        for sub in ("conf", "sessions/lock", "psessions/lock", "cache", "notifications"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.client_secret_file.write_text(self.client_secret)
        self.client_secret_file.chmod(0o600)
        (self.directory / "lemonldap-ng.ini").write_text(
            "[all]\nlogLevel = warn\ncheckTime = 1\n"
            f"[configuration]\ntype = File\ndirName = {self.directory / 'conf'}\n"
            f"[portal]\nstaticPrefix = /static\ntemplateDir = {PORTAL_TEMPLATES}\n"
            "languages = en, fr\n"
        )
        (self.directory / "portal.psgi").write_text(
            _PSGI % {"static": PORTAL_STATIC, "javascript": DEBIAN_JAVASCRIPT}
        )
        with sqlite3.connect(self.users_db) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS users (login TEXT PRIMARY KEY, password TEXT, "
                "mail TEXT, given TEXT, family TEXT, verified TEXT)"
            )
        private_key, public_key = _rsa_key_pair(self.directory)
        (self.directory / "conf" / "lmConf-1.json").write_text(
            json.dumps(self._configuration(private_key, public_key), indent=1)
        )

    def _configuration(self, private_key: str, public_key: str) -> dict:
        d = self.directory
        dbi = f"dbi:SQLite:dbname={self.users_db}"
        return {
            "cfgNum": 1,
            "cfgDate": str(int(time.time())),
            "cfgAuthor": "appliance tests",
            "cfgVersion": "2.16.1",
            "portal": f"{self.issuer}/",
            "domain": "127.0.0.1",
            "cookieName": "lemonldap",
            "securedCookie": 0,
            "portalSkin": "bootstrap",
            # The portal's own handler: every vhost rule must be a hash (Debian's default
            # configuration has them; a fresh one must say so).
            "locationRules": {"127.0.0.1": {"default": "accept"}},
            "exportedHeaders": {},
            "timeout": 3600,
            "globalStorage": "Apache::Session::File",
            "globalStorageOptions": {
                "Directory": str(d / "sessions"),
                "LockDirectory": str(d / "sessions/lock"),
                "generateModule": "Lemonldap::NG::Common::Apache::Session::Generate::SHA256",
            },
            "persistentStorage": "Apache::Session::File",
            "persistentStorageOptions": {
                "Directory": str(d / "psessions"),
                "LockDirectory": str(d / "psessions/lock"),
            },
            "localSessionStorage": "Cache::FileCache",
            "localSessionStorageOptions": {
                "cache_root": str(d / "cache"),
                "cache_depth": 3,
                "default_expires_in": 600,
                "namespace": "lemonldap-ng-sessions",
            },
            "notification": 0,
            "loginHistoryEnabled": 0,
            "whatToTrace": "_user",
            # People: the DBI backend on an SQLite table.
            "authentication": "DBI",
            "userDB": "Same",
            "passwordDB": "Null",
            "registerDB": "Null",
            "dbiAuthChain": dbi,
            "dbiAuthUser": "",
            "dbiAuthPassword": "",
            "dbiAuthTable": "users",
            "dbiAuthLoginCol": "login",
            "dbiAuthPasswordCol": "password",
            "dbiAuthPasswordHash": "",
            "dbiExportedVars": {
                "mail": "mail",
                "given": "given",
                "family": "family",
                "verified": "verified",
            },
            "exportedVars": {},
            # The OpenID provider and its one relying party.
            "issuerDBOpenIDConnectActivation": 1,
            "oidcServiceMetaDataIssuer": self.issuer,
            "oidcServicePrivateKeySig": private_key,
            "oidcServicePublicKeySig": public_key,
            "oidcServiceKeyIdSig": "appliance-tests",
            "oidcServiceIgnoreScopeForClaims": 1,
            "oidcRPMetaDataOptions": {
                "synapse": {
                    "oidcRPMetaDataOptionsClientID": CLIENT_ID,
                    "oidcRPMetaDataOptionsClientSecret": self.client_secret,
                    "oidcRPMetaDataOptionsRedirectUris": self.redirect_uri,
                    "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
                    "oidcRPMetaDataOptionsBypassConsent": 1,
                    "oidcRPMetaDataOptionsIDTokenForceClaims": 1,
                }
            },
            "oidcRPMetaDataExportedVars": {
                "synapse": {
                    "email": "mail",
                    "email_verified": "verified;bool",
                    "given_name": "given",
                    "family_name": "family",
                    "usual_name": "family",
                }
            },
        }

    # --- people ---------------------------------------------------------------------------
    def add_person(
        self,
        login: str,
        email: str,
        *,
        given: str | None = None,
        family: str | None = None,
        verified: bool | None = True,
    ) -> IdpPerson:
        """A person of the provider, who can sign in at once (password: the login reversed
        and padded, so no two people share one)."""
        password = f"{login[::-1]}-Pw-1"
        flag = None if verified is None else ("1" if verified else "0")
        with sqlite3.connect(self.users_db) as db:
            db.execute(
                "INSERT INTO users (login, password, mail, given, family, verified) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (login, password, email, given, family, flag),
            )
        return IdpPerson(login, password, email)


def _rsa_key_pair(directory: Path) -> tuple[str, str]:
    key = directory / "oidc-key.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout"], check=True, capture_output=True, text=True
    ).stdout
    return key.read_text(), public


def lemonldap_for(directory: Path, synapse_baseurl: str) -> LemonLdap:
    """A LemonLDAP::NG (not started) whose relying party is the Synapse at synapse_baseurl."""
    directory.mkdir(parents=True, exist_ok=True)
    return LemonLdap(directory, synapse_baseurl.rstrip("/") + "/_synapse/client/oidc/callback")


# --- the appliance signed into through LemonLDAP::NG ------------------------------------------

# ProConnect's claim names: LemonLDAP::NG above releases usual_name beside family_name, and the
# appliance is told to read usual_name, as an operator behind ProConnect would.
PROCONNECT_CLAIMS = {"email": "email", "given_name": "given_name", "family_name": "usual_name"}
BUTTON_LABEL = "Se connecter avec LemonLDAP::NG"


@dataclass
class SsoServer:
    """A Synapse with the module whose auth.oidc points at a running LemonLDAP::NG."""

    idp: LemonLdap
    synapse: SideSynapse
    settings: Settings
    admin_token: str

    @property
    def url(self) -> str:
        return self.synapse.url


def sso_settings(
    state_dir: Path,
    idp: LemonLdap,
    synapse_port: int,
    oidc_options: dict | None = None,
    *,
    extra: dict | None = None,
    **auth,
) -> Settings:
    """Evaluation settings whose auth.oidc is the given LemonLDAP::NG (ProConnect's claims),
    with the other auth.oidc keys given in ``oidc_options``, the other auth keys given, and
    `extra` top-level sections (e.g. terms)."""
    oidc = {
        "issuer": idp.issuer,
        "client_id": CLIENT_ID,
        "client_secret_file": str(idp.client_secret_file),
        "scopes": ["openid", "email", "profile"],
        "claims": PROCONNECT_CLAIMS,
        "button_label": BUTTON_LABEL,
        **(oidc_options or {}),
    }
    return evaluation_settings(
        state_dir,
        public_baseurl=f"http://127.0.0.1:{synapse_port}/",
        synapse={"listen": {"port": synapse_port}},
        auth={"oidc": oidc, **auth},
        **(extra or {}),
    )


@contextmanager
def running_sso_server(
    state_dir: Path, oidc_options: dict | None = None, *, extra: dict | None = None, **auth
) -> Iterator[SsoServer]:
    """LemonLDAP::NG, then a Synapse rendered by the project's renderer with auth.oidc set
    (with ``oidc_options`` added to it, the other auth keys given, and the accounts section if
    any)."""
    synapse_port = free_port()
    idp = lemonldap_for(state_dir / "lemonldap", f"http://127.0.0.1:{synapse_port}/")
    settings = sso_settings(state_dir, idp, synapse_port, oidc_options, extra=extra, **auth)
    idp.start()
    try:
        with SideSynapse(settings, Layout.from_settings(settings, state_dir)) as synapse:
            wait_for_allowlist(synapse.client())
            yield SsoServer(idp, synapse, settings, synapse.admin_token())
    finally:
        idp.stop()


@pytest.fixture(scope="module")
def sso_server(tmp_path_factory) -> Iterator[SsoServer]:
    """Single sign-on beside passwords (auth.password_login: true, the default)."""
    with running_sso_server(tmp_path_factory.mktemp("sso")) as server:
        yield server


@pytest.fixture(scope="module")
def sso_only_server(tmp_path_factory) -> Iterator[SsoServer]:
    """Agents through single sign-on only (auth.password_login: false), and only with addresses
    the provider says it verified (auth.oidc.require_email_verified: true)."""
    with running_sso_server(
        tmp_path_factory.mktemp("sso-only"),
        {"require_email_verified": True},
        password_login=False,
    ) as server:
        yield server


# --- a person signing in, in a real browser -----------------------------------------------------
# Debian's Chromium, driven by Playwright, from where a Matrix client sends its user to the
# provider's own login page and back, then the client's m.login.token exchange.

SIGN_IN_TIMEOUT = 30
# Where the "client" waits for its loginToken: a loopback port nobody listens on; the browser's
# request to it is answered by the test (Playwright's routing), so nothing leaves the machine.
CLIENT_URL = f"http://127.0.0.1:{free_port()}/client/"


@dataclass(frozen=True)
class SignIn:
    """What a person saw at the end of a single sign-on, and what the client got."""

    login_token: str | None
    page_text: str
    status: int | None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def sso_sign_in(browser: Browser, server: SsoServer, login: str, password: str) -> SignIn:
    """A person's whole sign-on in a fresh browser profile, as a Matrix client starts it."""
    context = browser.new_context(locale="fr-FR")
    context.set_default_timeout(SIGN_IN_TIMEOUT * 1000)
    try:
        page = context.new_page()
        page.route(
            f"{CLIENT_URL}**",
            lambda route: route.fulfill(status=200, content_type="text/html", body="client"),
        )
        redirect = (
            f"{server.url}/_matrix/client/v3/login/sso/redirect/{SSO_PROVIDER_ID}"
            f"?redirectUrl={quote(CLIENT_URL, safe='')}"
        )
        page.goto(redirect)
        # LemonLDAP::NG's own login form.
        page.fill("input[name=user]", login)
        page.fill("input[name=password]", password)
        with page.expect_navigation(url=f"{server.url}/_synapse/client/oidc/callback**") as nav:
            page.click("button[type=submit]")
        response = nav.value
        link = page.locator("a[href*='loginToken']")
        if link.count() == 0:
            return SignIn(None, page.inner_text("body"), response.status if response else None)
        # Synapse asks the person to confirm which client gets the account (not whitelisted).
        link.click()
        page.wait_for_url(f"{CLIENT_URL}**")
        token = parse_qs(urlsplit(page.url).query)["loginToken"][0]
        return SignIn(token, "", 200)
    finally:
        context.close()


def token_login(server: SsoServer, login_token: str) -> requests.Response:
    return requests.post(
        f"{server.url}/_matrix/client/v3/login",
        json={"type": "m.login.token", "token": login_token},
        timeout=SIGN_IN_TIMEOUT,
    )


def signed_in(server: SsoServer, sign_in: SignIn) -> dict:
    """The client's m.login.token exchange, which must succeed: the login response."""
    assert sign_in.login_token is not None, sign_in.page_text
    response = token_login(server, sign_in.login_token)
    assert response.status_code == 200, response.text
    return response.json()
