"""The one config renderer: every file on the box comes from `templates/` through `render_all`.

The `appliance` CLI calls it in evaluation and the Ansible roles call it (through
`appliance render`) in production, so the two cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from appliance import __version__
from appliance.layout import TEMPLATES_DIR, Layout
from appliance.secrets_store import write_private_file
from appliance.settings import Settings


@dataclass(frozen=True)
class RenderedFile:
    template: str
    path: Path
    content: str
    # Files that may hold a secret (a database or SMTP password) are private.
    mode: int = 0o644


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # config files, not HTML
    )


def _targets(settings: Settings, layout: Layout) -> list[tuple[str, Path, int]]:
    targets = [
        ("synapse/homeserver.yaml.j2", layout.homeserver_config, 0o600),
        ("synapse/log_config.yaml.j2", layout.synapse_log_config, 0o644),
        ("clamav/clamd.conf.j2", layout.clamd_config, 0o644),
        ("console/console.json.j2", layout.console_config, 0o600),
    ]
    if settings.clamav.signatures == "evaluation":
        targets.append(
            (
                "clamav/evaluation-eicar.ndb.j2",
                layout.clamav_database_dir / "appliance-evaluation-eicar.ndb",
                0o644,
            )
        )
    return targets


def render_all(
    settings: Settings, layout: Layout, *, clamav_user: str | None = None
) -> list[RenderedFile]:
    """Render every config file for these settings; nothing is written."""
    environment = _environment()
    context = {
        "settings": settings,
        "layout": layout,
        "version": __version__,
        "clamav_database_dir": layout.clamav_database_dir,
        # Production runs clamd as Debian's clamav user; evaluation as whoever runs `make up`.
        "clamav_user": clamav_user,
    }
    return [
        RenderedFile(name, path, environment.get_template(name).render(context), mode)
        for name, path, mode in _targets(settings, layout)
    ]


def write_all(files: list[RenderedFile]) -> list[Path]:
    """Write the rendered files; return those whose content changed (for restarts and Ansible)."""
    changed = []
    for file in files:
        if file.path.exists() and file.path.read_text(encoding="utf-8") == file.content:
            os.chmod(file.path, file.mode)
            continue
        if file.mode == 0o600:
            write_private_file(file.path, file.content)
        else:
            file.path.parent.mkdir(parents=True, exist_ok=True)
            file.path.write_text(file.content, encoding="utf-8")
            os.chmod(file.path, file.mode)
        changed.append(file.path)
    return changed
