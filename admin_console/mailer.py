# SPDX-License-Identifier: AGPL-3.0-or-later
"""Mail sent by the console itself (invitations), through the box's SMTP relay.

Transport security, decided here once:

* STARTTLS, when used, verifies the relay's certificate and host name
  (`ssl.create_default_context()`, with SMTP_CA_FILE for a private CA), as Synapse's own mailer
  does; a relay that fails the check gets nothing.
* STARTTLS is used when SMTP_STARTTLS (`mail.require_transport_security`) says so, and also,
  whatever it says, before a password is sent to a relay that is not on this host: the relay's
  password only ever crosses a network encrypted. A relay off this host that wants a password
  but offers no STARTTLS gets neither the password nor the mail.
* A relay on this host (a loopback address, judged from the connected socket, not the name)
  may get the password without TLS: it never leaves the machine.

A relay that accepts the connection and then never answers holds no request for long: each
exchange waits at most SMTP_TIMEOUT_SECONDS (default TIMEOUT_SECONDS), and once the relay has
timed out in a request, the request's other mails fail at once with the same reason (inviting
a hundred addresses must not wait a hundred times).
"""

from __future__ import annotations

import ipaddress
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid

from flask import current_app, g

TIMEOUT_SECONDS = 10
RELAY_TIMED_OUT = (
    "the mail relay {relay} did not answer within {seconds:g} s: nothing was sent, try again "
    "once it answers"
)


class MailNotSent(Exception):
    """The relay could not be reached or refused the message; str() says why."""


def send(to: str, subject: str, body: str) -> None:
    config = current_app.config
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain=config["SERVER_NAME_MATRIX"].split(":")[0])
    message.set_content(body)
    relay = f"{config['SMTP_HOST']}:{config['SMTP_PORT']}"
    stalled = g.get("mail_relay_timed_out")
    if stalled:
        raise MailNotSent(stalled)
    seconds = float(config.get("SMTP_TIMEOUT_SECONDS", TIMEOUT_SECONDS))
    try:
        with smtplib.SMTP(config["SMTP_HOST"], config["SMTP_PORT"], timeout=seconds) as smtp:
            _secure_and_log_in(smtp, config, relay)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        if _timed_out(error):
            g.mail_relay_timed_out = RELAY_TIMED_OUT.format(relay=relay, seconds=seconds)
            raise MailNotSent(g.mail_relay_timed_out) from None
        raise MailNotSent(f"the mail relay {relay} did not take it: {error}") from None


def _timed_out(error: BaseException) -> bool:
    """Connected, then no answer in time: smtplib turns the socket's timeout into
    SMTPServerDisconnected, raised while handling it."""
    return isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError)


def _secure_and_log_in(smtp: smtplib.SMTP, config, relay: str) -> None:
    user = config.get("SMTP_USER")
    if config.get("SMTP_STARTTLS") or (user and not _on_this_host(smtp)):
        smtp.ehlo()
        if not smtp.has_extn("starttls"):
            raise MailNotSent(
                f"the mail relay {relay} offers no STARTTLS, and the console sends mail "
                f"{'with a password ' if user else ''}only encrypted to it"
            )
        smtp.starttls(context=ssl.create_default_context(cafile=config.get("SMTP_CA_FILE")))
    if user:
        smtp.login(user, config.get("SMTP_PASSWORD") or "")


def _on_this_host(smtp: smtplib.SMTP) -> bool:
    peer = smtp.sock.getpeername()[0]
    return ipaddress.ip_address(peer.split("%")[0]).is_loopback
