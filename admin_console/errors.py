# SPDX-License-Identifier: AGPL-3.0-or-later
"""What an operator sees when Synapse is down, refuses, or lacks an endpoint."""

from __future__ import annotations

from flask import Flask, render_template

from admin_console.synapse_admin import EndpointMissing, SynapseRefused, SynapseUnavailable


def init_app(app: Flask) -> None:
    @app.errorhandler(SynapseUnavailable)
    def _unavailable(error: SynapseUnavailable):
        return render_template("error.html", kind="unavailable", reason=str(error)), 503

    @app.errorhandler(EndpointMissing)
    def _missing(error: EndpointMissing):
        return render_template("error.html", kind="missing", reason=error.path), 501

    @app.errorhandler(SynapseRefused)
    def _refused(error: SynapseRefused):
        status = 404 if error.status == 404 else 502
        return render_template("error.html", kind="refused", reason=str(error)), status
