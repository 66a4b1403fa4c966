# SPDX-License-Identifier: AGPL-3.0-or-later
"""The playbook's static checks: yamllint and ansible-lint (production profile) clean, every role
built the same way, and the inventory variables mapped onto keys the settings model knows."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from appliance.config.layout import SOURCE_ROOT
from appliance.config.settings import parse_settings

ANSIBLE_DIR = SOURCE_ROOT / "ansible"
ROLES = sorted(path.name for path in (ANSIBLE_DIR / "roles").iterdir() if path.is_dir())
TOOLS = Path(sys.executable).parent


def run_tool(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TOOLS / argv[0]), *argv[1:]],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        # ansible-lint caches what it installs in the project; keep it out of the tree.
        env={**os.environ, "ANSIBLE_HOME": str(Path.home() / ".ansible"), "NO_COLOR": "1"},
    )


def test_yamllint_is_clean():
    result = run_tool("yamllint", "--strict", "-c", ".yamllint", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile_is_clean():
    result = run_tool(
        "ansible-lint", "--profile", "production", "--offline", "site.yml", "restore.yml", "roles"
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]


def test_the_playbooks_parse():
    for playbook in ("site.yml", "restore.yml"):
        result = run_tool(
            "ansible-playbook", "-i", "inventories/vagrant", "--syntax-check", playbook
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("role", ROLES)
def test_role_has_the_expected_shape(role):
    path = ANSIBLE_DIR / "roles" / role
    for part in (
        "defaults/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "README.md",
        "tasks/main.yml",
        "tasks/validate_config.yml",
        "tasks/install.yml",
    ):
        assert (path / part).is_file(), f"{role}: {part} is missing"
    main = yaml.safe_load((path / "tasks/main.yml").read_text())
    imported = [task.get("ansible.builtin.import_tasks") for task in main]
    assert imported[:2] == ["validate_config.yml", "install.yml"], role
    tags = {
        tag
        for tasks_file in (path / "tasks").glob("*.yml")
        for task in yaml.safe_load(tasks_file.read_text()) or []
        for tag in task.get("tags", [])
    }
    assert "self-check" in tags, f"{role}: no task tagged self-check"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_prefixed_documented_and_validated(role):
    path = ANSIBLE_DIR / "roles" / role
    defaults = yaml.safe_load((path / "defaults/main.yml").read_text()) or {}
    specs = yaml.safe_load((path / "meta/argument_specs.yml").read_text())["argument_specs"]
    lines = (path / "defaults/main.yml").read_text().splitlines()
    for name in defaults:
        assert name.startswith(f"{role}_"), f"{role}: {name} is not prefixed with the role's name"
        assert name in specs["main"]["options"] or any(
            name in spec.get("options", {}) for spec in specs.values()
        ), f"{role}: {name} has no argument spec"
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        assert any(line.startswith("#") for line in lines[max(0, index - 6) : index]), (
            f"{role}: {name} has no comment above it in defaults/main.yml"
        )


def test_inventory_variables_map_onto_valid_settings():
    """The mapping in the appliance role, templated with the vagrant inventory, is accepted by the
    settings model (unknown keys or bad values would be refused with their path)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar

    loader = DataLoader()

    def load(path: Path) -> dict:
        # Trusted as templates, as a playbook run trusts its own files.
        return loader.load_from_file(str(path), trusted_as_template=True) or {}

    roles = ANSIBLE_DIR / "roles"
    variables = {"playbook_dir": str(ANSIBLE_DIR)}
    for role in ROLES:
        variables |= load(roles / role / "defaults/main.yml")
    mapping = load(roles / "appliance/vars/main.yml")
    inventory = load(ANSIBLE_DIR / "inventories/vagrant/group_vars/appliance/vars.yml")
    variables |= mapping | inventory
    data = Templar(loader=loader, variables=variables).template(
        mapping["appliance_settings_from_inventory"]
    )
    settings = parse_settings(data, "the appliance role's mapping")
    assert settings.mode == "production"
    assert settings.public_baseurl == inventory["appliance_public_baseurl"]
    assert settings.clamav.evaluation_fallback is True
    assert settings.nginx.https_port == 443 and settings.host.service_user == "appliance"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_in_the_roles_readme(role):
    path = ANSIBLE_DIR / "roles" / role
    defaults = yaml.safe_load((path / "defaults/main.yml").read_text()) or {}
    readme = (path / "README.md").read_text()
    for section in ("## Requirements", "## Role Variables", "## Example Playbook"):
        assert section in readme, f"{role}: README has no {section}"
    missing = [name for name in defaults if f"`{name}`" not in readme]
    assert not missing, f"{role}: README does not describe {missing}"


# Variables one role reads from another --------------------------------------------------------
CROSS_ROLE_CHECK = "Check the variables this role reads from other roles"
IDENTIFIER = re.compile(r"\b[a-z][a-z0-9_]*\b")


def _tasks(role: str):
    for path in (ANSIBLE_DIR / "roles" / role / "tasks").glob("*.yml"):
        for task in yaml.safe_load(path.read_text()) or []:
            yield from (task, *task.get("block", []), *task.get("rescue", []))


def declared(role: str) -> set[str]:
    """The role's defaults and vars: what other roles may rely on."""
    names: set[str] = set()
    for part in ("defaults/main.yml", "vars/main.yml"):
        path = ANSIBLE_DIR / "roles" / role / part
        if path.is_file():
            names |= set(yaml.safe_load(path.read_text()) or {})
    return names


def provided(role: str) -> set[str]:
    """Declared, or set while the role runs (set_fact, register)."""
    names = declared(role)
    for task in _tasks(role):
        names |= set(task.get("ansible.builtin.set_fact", {}))
        if "register" in task:
            names.add(task["register"])
    return names


def read_by(role: str) -> set[str]:
    """Every identifier in the role's tasks, handlers, vars and templates, comments aside."""
    names: set[str] = set()
    for path in (ANSIBLE_DIR / "roles" / role).rglob("*"):
        if path.suffix in (".yml", ".j2") and not {"defaults", "meta"} & set(path.parts):
            lines = path.read_text().splitlines()
            code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
            names |= set(IDENTIFIER.findall(code))
    return names


def checked(role: str) -> set[str]:
    path = ANSIBLE_DIR / "roles" / role / "tasks/validate_config.yml"
    tasks = yaml.safe_load(path.read_text()) or []
    return {name for task in tasks if task.get("name") == CROSS_ROLE_CHECK for name in task["loop"]}


@pytest.mark.parametrize("role", ROLES)
def test_what_a_role_reads_from_another_is_declared_there_and_checked(role):
    """So that `--tags <role>` alone works: a fact set by another role's tasks (which do not run
    then) has a default in that role, and the role checks, before anything, that it is there."""
    others = {other: provided(other) for other in ROLES if other != role}
    reads = {
        name
        for name in read_by(role) - provided(role)
        if any(name in names for names in others.values())
    }
    undeclared = {
        name
        for name in reads
        if not any(name in declared(other) for other in ROLES if other != role)
    }
    assert not undeclared, f"{role} reads {undeclared}, set by another role without a default"
    assert checked(role) == reads, f"{role}: {CROSS_ROLE_CHECK} must list exactly {sorted(reads)}"


def run_checks_only(playbook: str, inventory: str, *extra: str) -> subprocess.CompletedProcess:
    """The playbook on this machine in check mode, limited by a tag no task has: only the tasks
    tagged `always` (every role's validate_config.yml) run, as they do before `--tags synapse`."""
    return run_tool(
        "ansible-playbook",
        "-i",
        inventory,
        playbook,
        "--check",
        "--tags",
        "no-task-has-this-tag",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "-e",
        f"appliance_source_dir={SOURCE_ROOT}",
        *extra,
    )


def test_every_roles_checks_pass_when_one_role_is_run_alone():
    result = run_checks_only("site.yml", "inventories/vagrant")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert result.stdout.count(f": {CROSS_ROLE_CHECK}]") == len(ROLES)


def test_a_role_played_without_the_roles_it_reads_from_says_what_is_missing(tmp_path):
    playbook = tmp_path / "synapse-only.yml"
    playbook.write_text(
        "- hosts: appliance\n  gather_facts: false\n  roles: [synapse]\n",
    )
    result = run_checks_only(str(playbook), "inventories/vagrant")
    assert result.returncode != 0
    assert "appliance_changed_files is not defined: the synapse role reads it" in result.stdout


# Loads the Vagrantfile with a stand-in for Vagrant that records what the file configures:
# Vagrant itself cannot run here (no VirtualBox or libvirt), Ruby can.
VAGRANT_RECORDER = r"""
require "json"
RECORD = {"ports" => [], "provisioners" => []}
class Settings
  attr_reader :values
  def initialize; @values = {}; end
  def method_missing(name, *args)
    @values[name.to_s.chomp("=")] = args.first
  end
  def respond_to_missing?(*) = true
end
class VM < Settings
  def network(kind, **options)
    RECORD["ports"] << options if kind == "forwarded_port"
  end
  def provision(name, type:, **options)
    settings = Settings.new
    yield settings if block_given?
    RECORD["provisioners"] << {"name" => name, "type" => type, **options, **settings.values}
  end
  def provider(*) = nil
  def synced_folder(*, **) = nil
end
class Config
  def vm = (@vm ||= VM.new)
end
module Vagrant
  def self.configure(version)
    config = Config.new
    yield config
    RECORD["box"] = config.vm.values["box"]
  end
end
load ARGV.fetch(0)
puts JSON.generate(RECORD)
"""


def test_vagrantfile_provisions_the_box_with_site_yml_and_prints_the_console_url(tmp_path):
    ruby = shutil.which("ruby")
    # A missing tool fails the test: a skip would let an unchecked Vagrantfile pass as green.
    assert ruby is not None, (
        "ruby is not installed: run `scripts/install-system-packages --with-test-packages` as root"
    )
    recorder = tmp_path / "recorder.rb"
    recorder.write_text(VAGRANT_RECORDER)
    result = subprocess.run(
        [ruby, str(recorder), str(SOURCE_ROOT / "Vagrantfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    vagrant = json.loads(result.stdout)
    assert vagrant["box"] == "debian/bookworm64"
    provisioners = {p["name"]: p for p in vagrant["provisioners"]}
    ansible = provisioners["appliance"]
    assert ansible["type"] == "ansible_local" and ansible["playbook"] == "site.yml"
    assert ansible["provisioning_path"] == "/vagrant/ansible"
    assert (ANSIBLE_DIR / ansible["inventory_path"] / "hosts.yml").is_file()
    # The URL the inventory gives clients is the forwarded HTTPS port, and is printed last.
    inventory_vars = ANSIBLE_DIR / "inventories/vagrant/group_vars/appliance/vars.yml"
    inventory = yaml.safe_load(inventory_vars.read_text())
    public = urlsplit(inventory["appliance_public_baseurl"])
    assert {"guest": 443, "host": public.port, "host_ip": "127.0.0.1"} in vagrant["ports"]
    printed = vagrant["provisioners"][-1]
    assert printed["type"] == "shell" and printed["run"] == "always"
    assert f"{inventory['appliance_public_baseurl']}console/" in printed["inline"]
