"""docker-compose.yml, the Dockerfile and deploy/ agree with the code they run.

No Docker engine is needed: the files are read statically and checked against what they
refer to: the ``spendwatch`` console script and its subcommands (``stream.commands.cli``), the
settings fields and their environment names (``stream.settings``), the topic defaults
(``TopicSettings``), files and directories in this repository. ``deploy/create-topics.sh``
is run with stand-in Kafka tools that record their arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import typing
from contextlib import redirect_stderr
from fnmatch import fnmatch
from io import StringIO
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from stream.commands.cli import build_parser, main
from stream.settings import SECRET_FIELDS, Settings, TopicSettings, load_settings
from stream.settings.yamlsource import ConfigFileError

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_FILE = "deploy/spendwatch.env"
ENV_EXAMPLE = REPO / "deploy" / "spendwatch.env.example"
TOPICS_SCRIPT = REPO / "deploy" / "create-topics.sh"
CONFIG = REPO / "config" / "spendwatch.yaml"
PREFIX = "SPENDWATCH_"
IMAGE_CONFIG_DIR = PurePosixPath("/app/config")  # where the image and the compose put config/
SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash"}
SECRET_WORDS = ("PASSWORD", "PASSWD", "TOKEN", "SECRET", "API_KEY", "PRIVATE_KEY")
PLACEHOLDERS = {"", "change-me", "changeme"}
# Subcommands that read the settings file: in the image the default config path
# (next to the installed package) does not exist, so they must be given --config.
READS_CONFIG = {"worker", "produce", "replay"}
TOPIC_KINDS = {"usage", "errors", "customers"}


# ------------------------------------------------------------------ reading the files


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), f"{COMPOSE_FILE.name}: the top level is not a mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    found = load_compose().get("services")
    assert isinstance(found, dict) and found, f"{COMPOSE_FILE.name}: no services"
    return found


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        assert stages, f"{path.name}: an instruction before the first FROM: {line}"
        stages[-1].append((word.upper(), rest.strip()))
    assert stages, f"{path.name}: no FROM"
    return stages[-1]


def dockerfile_all(name: str) -> list[str]:
    return [args for word, args in dockerfile_instructions() if word == name]


def dockerfile_last(name: str) -> str:
    found = dockerfile_all(name)
    assert found, f"{DOCKERFILE.name}: no {name} in the final stage"
    return found[-1]


def exec_form(args: str, what: str) -> list[str]:
    assert args.startswith("["), f"{DOCKERFILE.name}: {what} should be in exec (JSON) form"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), what
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_all("ENV"):
        for item in shlex.split(args):
            name, sep, value = item.partition("=")
            assert sep, f"{DOCKERFILE.name}: ENV {item!r}: use the NAME=value form"
            env[name] = value
    return env


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {name: value for name, _, value in pairs}
    return {name: "" if value is None else str(value) for name, value in env.items()}


def env_files(service: dict[str, Any]) -> list[str]:
    value = service.get("env_file") or []
    items = [value] if isinstance(value, str | dict) else value
    return [item["path"] if isinstance(item, dict) else item for item in items]


def read_env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(active NAME=value lines, commented-out ``# NAME=value`` lines) of the example."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            (commented if match.group(1) else active)[match.group(2)] = match.group(3).strip()
    return active, commented


def our_image_services() -> dict[str, dict[str, Any]]:
    """The services that run the image built from the Dockerfile."""
    return {name: s for name, s in services().items() if "build" in s}


def spendwatch_invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after ``spendwatch``) for every spendwatch command the compose runs."""
    entrypoint = exec_form(dockerfile_last("ENTRYPOINT"), "ENTRYPOINT")
    cmd = exec_form(dockerfile_last("CMD"), "CMD")
    found: list[tuple[str, list[str]]] = []
    for name, service in our_image_services().items():
        if "entrypoint" in service:  # Compose drops the image's CMD with its ENTRYPOINT
            argv = as_list(service["entrypoint"]) + as_list(service.get("command"))
        else:
            argv = entrypoint + (as_list(service["command"]) if "command" in service else cmd)
        found.extend((f"{name}: {' '.join(args)}", args) for args in commands_in(argv))
    return found


def commands_in(argv: list[str]) -> list[list[str]]:
    """spendwatch argument lists in an argv: direct, or inside ``sh -c SCRIPT``."""
    if not argv:
        return []
    if Path(argv[0]).name == "spendwatch":
        return [argv[1:]]
    if argv[0] in SHELLS:
        flags = [a for a in argv[1:] if a.startswith("-")]
        assert any("c" in f for f in flags), f"a shell entrypoint without -c: {argv}"
        script = next(a for a in argv[1:] if not a.startswith("-"))
        return commands_in_script(script)
    return []


def commands_in_script(script: str) -> list[list[str]]:
    script = script.replace("$$", "$")  # Compose's escape for a literal $
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        segment: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("&|;()<>"):
                if segment and Path(segment[0]).name == "spendwatch":
                    found.append(segment[1:])
                segment = []
            else:
                segment.append(token)
    return found


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("stream.commands.cli.build_parser() has no subcommands")


def env_field(name: str) -> tuple[str, ...] | None:
    """The settings field path a SPENDWATCH_* variable sets, or None if there is none."""
    parts = name.removeprefix(PREFIX).lower().split("__")
    model: Any = Settings
    path: list[str] = []
    i = 0
    while i < len(parts):
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(parts[i])
            if field is None or parts[i] == "source_path":
                return None
            annotation = field.annotation
        elif isinstance(model, type) and dataclasses.is_dataclass(model):  # detector params
            if parts[i] not in {f.name for f in dataclasses.fields(model)}:
                return None
            annotation = typing.get_type_hints(model)[parts[i]]
        else:
            return None  # nested below a plain value
        path.append(parts[i])
        model = annotation
        i += 1
        if typing.get_origin(model) is dict:  # plans.<name>.<field>: one part is the key
            if i < len(parts):
                path.append(parts[i])
                i += 1
            model = typing.get_args(model)[1]
        else:  # Optional[X] -> X
            args = [a for a in typing.get_args(model) if a is not type(None)]
            if len(args) == 1:
                model = args[0]
    return tuple(path)


def settings_with(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, value)
    try:
        return load_settings(CONFIG)
    except ConfigFileError as exc:
        names = sorted(n for n in env if n.startswith(PREFIX))
        raise AssertionError(f"Settings refuse the deployment's values of {names}: {exc}") from None


def host_path(source: str) -> Path:
    return (COMPOSE_FILE.parent / source).resolve()


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of a service's bind mounts."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, _, rest = volume.partition(":")
        if source.startswith((".", "/", "~")):
            mounts.append((source, rest.split(":")[0]))
    return mounts


def named_volumes(service: dict[str, Any]) -> list[str]:
    names = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "volume" and volume.get("source"):
                names.append(volume["source"])
            continue
        source, sep, _ = volume.partition(":")
        if sep and not source.startswith((".", "/", "~")):
            names.append(source)
    return names


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


# ------------------------------------------------------------------ the compose file


def test_the_compose_file_follows_the_compose_spec_and_has_the_services():
    data = load_compose()
    assert "version" not in data, "docker-compose.yml: the Compose spec has no `version:` key"
    missing = {"kafka", "create-topics", "worker", "demo-producer"} - set(services())
    assert not missing, f"docker-compose.yml: services missing: {sorted(missing)}"
    header = COMPOSE_FILE.read_text().split("services:")[0]
    for command in (
        "cp deploy/spendwatch.env.example deploy/spendwatch.env",
        "docker compose up -d",
        "docker compose --profile demo up demo-producer",
        "curl localhost:6066/health",
    ):
        assert command in header, f"docker-compose.yml: the header comment lacks `{command}`"


def test_every_service_has_an_image_or_a_build_with_a_dockerfile():
    for name, service in services().items():
        assert "image" in service or "build" in service, f"service {name}: no image and no build"
        if "build" in service:
            build = service["build"]
            build = {"context": build} if isinstance(build, str) else build
            context = host_path(build.get("context", "."))
            assert context.is_dir(), f"service {name}: build context {context} does not exist"
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            assert dockerfile.is_file(), f"service {name}: {dockerfile} does not exist"
            assert dockerfile.resolve() == DOCKERFILE, (
                f"service {name}: builds {dockerfile}, these tests check {DOCKERFILE}"
            )
        else:
            image = service["image"]
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            assert tag and tag != "latest", f"service {name}: pin the image tag ({image!r})"


def test_restart_policies_are_valid_strings():
    # An unquoted `no` is YAML's false, which Compose refuses.
    for name, service in services().items():
        if "restart" in service:
            assert service["restart"] in {"no", "always", "on-failure", "unless-stopped"}, (
                f"service {name}: restart {service['restart']!r} is not a Compose policy "
                '(quote "no")'
            )


def test_depends_on_targets_are_services_with_what_the_condition_needs():
    all_services = services()
    for name, service in all_services.items():
        for target, condition in depends_on(service).items():
            assert target in all_services, f"service {name} depends on unknown service {target}"
            other = all_services[target]
            assert condition in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }, f"service {name}: depends_on {target}: unknown condition {condition!r}"
            if condition == "service_healthy":
                has_check = bool(other.get("healthcheck")) and not other["healthcheck"].get(
                    "disable"
                )
                if "build" in other and not other.get("healthcheck"):
                    has_check = bool(dockerfile_all("HEALTHCHECK"))
                assert has_check, f"service {name} waits for {target} healthy: it has no check"
            if condition == "service_completed_successfully":
                assert other.get("restart", "no") == "no", (
                    f"service {name} waits for {target} to complete: it must not restart"
                )
            assert not other.get("profiles") or service.get("profiles"), (
                f"service {name} (always started) depends on {target}, "
                f"which only runs with profile {other['profiles']}"
            )


def test_the_worker_waits_for_the_topics_and_the_demo_only_runs_when_asked():
    all_services = services()
    assert depends_on(all_services["worker"]).get("create-topics") == (
        "service_completed_successfully"
    ), "worker: should start after create-topics completed successfully"
    assert depends_on(all_services["create-topics"]).get("kafka") == "service_healthy", (
        "create-topics: should wait for a healthy kafka"
    )
    assert all_services["demo-producer"].get("profiles") == ["demo"], (
        "demo-producer: should run only with `--profile demo`"
    )
    assert all_services["demo-producer"].get("build") == all_services["worker"].get("build"), (
        "demo-producer: should run the worker's image (same build)"
    )


def test_bind_mounted_host_paths_exist_and_named_volumes_are_declared():
    declared = set(load_compose().get("volumes") or {})
    for name, service in services().items():
        for source, target in bind_mounts(service):
            assert host_path(source).exists(), (
                f"service {name}: bind mount {source}:{target}: {host_path(source)} does not exist"
            )
        for volume in named_volumes(service):
            assert volume in declared, (
                f"service {name}: volume {volume!r} is not declared under top-level volumes:"
            )


def test_env_files_exist_or_are_created_from_the_example():
    for name, service in services().items():
        for file in env_files(service):
            if host_path(file).exists():
                continue
            assert file == ENV_FILE, f"service {name}: env_file {file} does not exist"
            assert ENV_EXAMPLE.is_file(), (
                f"service {name}: env_file {file} is created from {ENV_EXAMPLE.name}, "
                "which does not exist"
            )
    assert ENV_FILE in env_files(services()["worker"]), (
        f"worker: secrets come from env_file {ENV_FILE}"
    )


def test_the_secrets_file_stays_out_of_the_image_build_context():
    patterns = [p for p in DOCKERIGNORE.read_text().splitlines() if p and not p.startswith("#")]
    assert any(fnmatch(ENV_FILE, p.lstrip("/")) for p in patterns), (
        f".dockerignore: {ENV_FILE} (secrets) would be sent to the image build"
    )


def test_no_secret_values_are_written_in_the_compose_file():
    for name, service in services().items():
        for var, value in environment(service).items():
            secret = any(word in var.upper() for word in SECRET_WORDS)
            if secret:
                assert re.fullmatch(r"\$\{?\w+\}?", value), (
                    f"service {name}: {var} has a literal value in docker-compose.yml; "
                    f"put it in {ENV_FILE}"
                )
    text = COMPOSE_FILE.read_text()
    for path in SECRET_FIELDS:
        var = PREFIX + "__".join(p.upper() for p in path)
        assert not re.search(rf"{var}\s*[:=]\s*[^\s$]", text), (
            f"docker-compose.yml sets the secret {var}: it belongs in {ENV_FILE}"
        )
    leaked = re.findall(r"(?i)\b\w*(?:password|passwd|token)\w*\s*[:=]\s*['\"]?[^\s'\"$]+", text)
    assert not leaked, f"docker-compose.yml: literal secret-looking values: {leaked}"


def test_the_env_example_holds_placeholders_only():
    active, commented = read_env_example()
    secret_vars = {PREFIX + "__".join(p.upper() for p in path) for path in SECRET_FIELDS}
    for var, value in {**commented, **active}.items():
        if var in secret_vars or any(word in var for word in SECRET_WORDS):
            assert value.lower() in PLACEHOLDERS or value.startswith("<"), (
                f"{ENV_EXAMPLE.name}: {var} should be a placeholder, not {value!r}"
            )


# ------------------------------------------------------------------ settings


def spendwatch_env_vars() -> dict[str, list[str]]:
    """SPENDWATCH_* names the deployment sets, with where each is set."""
    where: dict[str, list[str]] = {}
    for name, service in services().items():
        for var in environment(service):
            where.setdefault(var, []).append(f"docker-compose.yml service {name}")
    active, commented = read_env_example()
    for var in {**active, **commented}:
        where.setdefault(var, []).append(ENV_EXAMPLE.name)
    for var in dockerfile_env():
        where.setdefault(var, []).append("Dockerfile ENV")
    for var in re.findall(r"\$\{(SPENDWATCH_\w+)", TOPICS_SCRIPT.read_text()):
        where.setdefault(var, []).append(TOPICS_SCRIPT.name)
    return {var: places for var, places in where.items() if var.startswith(PREFIX)}


def test_every_spendwatch_variable_is_a_settings_field():
    found = spendwatch_env_vars()
    assert found, "no SPENDWATCH_* variables found in the deployment files"
    unknown = {var: places for var, places in found.items() if env_field(var) is None}
    assert not unknown, (
        "SPENDWATCH_* variables that set no field of stream.settings.Settings "
        f"(SPENDWATCH_<SECTION>__<FIELD>): {unknown}"
    )


def test_settings_accept_the_worker_environment(monkeypatch):
    active, _ = read_env_example()
    env = {**dockerfile_env(), **active, **environment(services()["worker"])}
    settings = settings_with(monkeypatch, env)
    assert settings.kafka.bootstrap_servers == "kafka:9092", (
        "worker: SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS should name the compose broker kafka:9092"
    )
    assert settings.worker.web_host == "0.0.0.0", (
        "worker: the web port must listen on 0.0.0.0 in the container to be published"
    )
    demo = {**dockerfile_env(), **environment(services()["demo-producer"])}
    assert settings_with(monkeypatch, demo).kafka.bootstrap_servers == "kafka:9092", (
        "demo-producer: SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS should be kafka:9092"
    )


def test_settings_accept_the_commented_sasl_example(monkeypatch):
    active, commented = read_env_example()
    settings = settings_with(monkeypatch, {**active, **commented})
    for var, value in commented.items():
        node: Any = settings
        for part in env_field(var) or ():
            node = getattr(node, part)
        if isinstance(node, SecretStr):
            node = node.get_secret_value()
        same = float(value) == node if isinstance(node, int | float) else str(node) == value
        assert same, f"{ENV_EXAMPLE.name}: {var}={value} did not reach the setting ({node!r})"


def test_the_published_worker_port_is_the_web_port(monkeypatch):
    worker = services()["worker"]
    env = {**dockerfile_env(), **environment(worker)}
    port = settings_with(monkeypatch, env).worker.web_port
    published = []
    for item in worker.get("ports") or []:
        if isinstance(item, dict):
            published.append((str(item.get("published")), str(item["target"])))
        else:
            host, _, container = str(item).rpartition(":")
            published.append((host.rpartition(":")[2], container.split("/")[0]))
    assert published, "worker: no published port for /health and /metrics"
    assert any(container == str(port) for _, container in published), (
        f"worker: publishes {published}, but the worker listens on {port} "
        "(worker.web_port / SPENDWATCH_WORKER__WEB_PORT)"
    )
    assert str(port) in " ".join(dockerfile_all("EXPOSE")).split(), (
        f"Dockerfile: EXPOSE should include the worker's web port {port}"
    )


# ------------------------------------------------------------------ the Dockerfile


def test_the_image_runs_the_console_script_declared_in_pyproject():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = exec_form(dockerfile_last("ENTRYPOINT"), "ENTRYPOINT")
    assert entrypoint == ["spendwatch"], f"Dockerfile: ENTRYPOINT {entrypoint}, not spendwatch"
    assert scripts.get("spendwatch") == "stream.commands.cli:main", (
        "pyproject.toml: the spendwatch console script should be stream.commands.cli:main"
    )
    cmd = exec_form(dockerfile_last("CMD"), "CMD")
    assert cmd[:1] == ["worker"], f"Dockerfile: CMD {cmd} should run the worker"


def test_the_image_cmd_is_a_cli_subcommand():
    cmd = exec_form(dockerfile_last("CMD"), "CMD")
    known = subcommands()
    assert cmd[0] in known, (
        f"Dockerfile: CMD runs `spendwatch {cmd[0]}`, which stream.commands.cli.build_parser() "
        f"does not have (it has {sorted(known)})"
    )
    parse(cmd, "Dockerfile CMD")


def test_the_image_is_slim_non_root_and_installs_the_project_without_dev_extras():
    text = DOCKERFILE.read_text()
    bases = re.findall(r"(?im)^FROM\s+(\S+)", text)
    assert bases and bases[-1] == "python:3.11-slim", f"Dockerfile: final base {bases[-1:]}"
    user = dockerfile_last("USER").split(":")[0]
    assert user not in {"root", "0"}, "Dockerfile: the image must not run as root"
    assert dockerfile_last("WORKDIR") == "/app", "Dockerfile: WORKDIR should be /app"
    installs = re.findall(r"pip (?:install|wheel)[^\n]*", text)
    assert installs, "Dockerfile: the project is not pip-installed"
    assert not any("[dev]" in line or "-e " in line for line in installs), (
        f"Dockerfile: installs dev extras or in editable mode: {installs}"
    )
    copies = [shlex.split(a) for a in dockerfile_all("COPY")]
    assert any(
        c[-1].rstrip("/") == str(IMAGE_CONFIG_DIR) and "config" in [s.rstrip("/") for s in c[:-1]]
        for c in copies
    ), f"Dockerfile: config/ should be copied to {IMAGE_CONFIG_DIR}"


def test_the_image_healthcheck_asks_the_worker_web_port():
    check = dockerfile_last("HEALTHCHECK")
    assert "curl" not in check and "urllib" in check, (
        "Dockerfile: HEALTHCHECK should use python's urllib (slim images have no curl)"
    )
    default_port = Settings.model_fields["worker"].default.web_port
    assert "http://127.0.0.1:" in check and "/health" in check, (
        "Dockerfile: HEALTHCHECK should GET http://127.0.0.1:<web_port>/health"
    )
    assert f"'{default_port}'" in check or f":{default_port}/health" in check, (
        f"Dockerfile: HEALTHCHECK's port is not worker.web_port's default {default_port}"
    )


def test_dockerignore_keeps_what_the_image_copies_and_drops_local_state():
    patterns = [
        p.strip().lstrip("/").rstrip("/")
        for p in DOCKERIGNORE.read_text().splitlines()
        if p.strip() and not p.startswith(("#", "!"))
    ]
    sources = []
    for word, args in dockerfile_instructions_all_stages():
        if word == "COPY" and "--from" not in args:
            sources.extend(s.rstrip("/") for s in shlex.split(args)[:-1] if not s.startswith("-"))
    for source in sources:
        assert (REPO / source).exists(), f"Dockerfile: COPY {source}: not in the repository"
        parents = [source, *(str(p) for p in PurePosixPath(source).parents if str(p) != ".")]
        hit = [p for p in patterns for part in parents if fnmatch(part, p)]
        assert not hit, f".dockerignore: {hit} excludes {source}, which the Dockerfile copies"
    for local in (".venv", ".git", ".pytest_cache", "out", "bench/results"):
        assert any(fnmatch(local, p) for p in patterns), f".dockerignore: {local} is not excluded"


def dockerfile_instructions_all_stages() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


# ------------------------------------------------------------------ spendwatch commands


def parse(argv: list[str], where: str) -> argparse.Namespace:
    # Shell variables ($error_rate) stand for numbers computed at run time.
    concrete = [re.sub(r"\$\{?\w+\}?", "1", a) for a in argv]
    err = StringIO()
    try:
        with redirect_stderr(err):
            return build_parser().parse_args(concrete)
    except SystemExit:
        raise AssertionError(
            f"{where}: `spendwatch {' '.join(argv)}` is refused by the CLI: "
            f"{err.getvalue().strip()}"
        ) from None


INVOCATIONS = spendwatch_invocations()
INVOCATION_IDS = [
    f"{where.split(':')[0]}-{argv[0] if argv else 'none'}-{n}"
    for n, (where, argv) in enumerate(INVOCATIONS)
]


def test_the_compose_runs_the_worker_and_the_demo_commands():
    by_command = [argv[0] for _, argv in INVOCATIONS if argv]
    assert by_command.count("worker") >= 1, "docker-compose.yml: nothing runs `spendwatch worker`"
    assert "simulate" in by_command and by_command.count("produce") >= 3, (
        "demo-producer: should simulate, then produce customers, usage and errors"
    )


@pytest.mark.parametrize(("where", "argv"), INVOCATIONS, ids=INVOCATION_IDS)
def test_every_compose_spendwatch_command_is_a_cli_subcommand(where, argv):
    known = subcommands()
    assert argv, f"{where}: `spendwatch` without a subcommand"
    assert argv[0] in known, (
        f"{where}: `spendwatch {argv[0]}` is not a subcommand of "
        f"stream.commands.cli.build_parser() (it has {sorted(known)})"
    )
    parse(argv, where)


@pytest.mark.parametrize(("where", "argv"), INVOCATIONS, ids=INVOCATION_IDS)
def test_config_paths_given_to_spendwatch_exist(where, argv):
    if "--config" not in argv:
        assert argv[0] not in READS_CONFIG, (
            f"{where}: `spendwatch {argv[0]}` needs --config {IMAGE_CONFIG_DIR}/spendwatch.yaml "
            "(the default config path does not exist in the image)"
        )
        return
    path = PurePosixPath(argv[argv.index("--config") + 1])
    assert path.is_relative_to(IMAGE_CONFIG_DIR), (
        f"{where}: --config {path} is outside {IMAGE_CONFIG_DIR}, where config/ is"
    )
    in_repo = REPO / "config" / path.relative_to(IMAGE_CONFIG_DIR)
    assert in_repo.is_file(), f"{where}: --config {path}: {in_repo} does not exist"
    mounts = dict((target, source) for source, target in bind_mounts(services()["worker"]))
    assert host_path(mounts.get(str(IMAGE_CONFIG_DIR), "config")) == REPO / "config", (
        f"worker: {IMAGE_CONFIG_DIR} should be the bind mount of ./config"
    )


def test_the_demo_publishes_the_files_simulate_writes(tmp_path):
    script = " ".join(as_list(services()["demo-producer"].get("entrypoint")))
    simulate = [argv for _, argv in INVOCATIONS if argv[:1] == ["simulate"]]
    assert len(simulate) == 1, "demo-producer: should run `spendwatch simulate` once"
    outdir = PurePosixPath(simulate[0][1])
    err = StringIO()
    with redirect_stderr(err):
        code = main(["simulate", str(tmp_path), "--days", "0.01", "--customers", "3"])
    assert code == 0, f"spendwatch simulate failed: {err.getvalue()}"
    written = {p.name for p in tmp_path.iterdir()}
    used = set(re.findall(rf"{re.escape(str(outdir))}/([\w.-]+)", script))
    assert used - {""} <= written, (
        f"demo-producer: reads {sorted(used - written)} from {outdir}, which "
        f"`spendwatch simulate` does not write (it writes {sorted(written)})"
    )
    topics = {}
    for where, argv in INVOCATIONS:
        if argv[:1] == ["produce"]:
            topic = argv[argv.index("--topic") + 1] if "--topic" in argv else None
            assert topic in TOPIC_KINDS, f"{where}: --topic should be one of {TOPIC_KINDS}"
            topics[topic] = PurePosixPath(argv[1]).name
    assert set(topics) == TOPIC_KINDS, f"demo-producer: produces to {sorted(topics)} only"
    for kind, file in topics.items():
        assert file.startswith(kind), f"demo-producer: {file} is sent to the {kind} topic"


# ------------------------------------------------------------------ Kafka and the topics


def test_the_broker_advertises_the_address_the_clients_use():
    all_services = services()
    kafka = environment(all_services["kafka"])
    assert all_services["kafka"]["image"].startswith("apache/kafka:"), "kafka: official image"
    for var in ("KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS"):
        assert var in kafka, f"kafka: {var} is not set"
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller", "kafka: KRaft combined mode"
    advertised = dict(
        reversed(item.split("://")) for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    names = {item.split("://")[0] for item in kafka["KAFKA_LISTENERS"].split(",")}
    mapped = {
        item.split(":")[0] for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    }
    assert names <= mapped, f"kafka: listeners {names - mapped} have no security protocol"
    assert kafka["KAFKA_CONTROLLER_LISTENER_NAMES"] in names, "kafka: no controller listener"
    voter = kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")[0]
    assert voter == kafka["KAFKA_NODE_ID"], "kafka: the quorum voter is not this node"
    clients = {
        name: environment(s).get("SPENDWATCH_KAFKA__BOOTSTRAP_SERVERS")
        for name, s in our_image_services().items()
    }
    clients["create-topics"] = environment(all_services["create-topics"]).get("BOOTSTRAP_SERVERS")
    for name, bootstrap in clients.items():
        assert bootstrap in advertised, (
            f"service {name}: connects to {bootstrap}, the broker advertises {sorted(advertised)}"
        )
    volumes = [v.split(":")[1] for v in all_services["kafka"].get("volumes", [])]
    assert kafka.get("KAFKA_LOG_DIRS") in volumes, "kafka: its log dir is not on the volume"
    check = " ".join(as_list(all_services["kafka"]["healthcheck"]["test"]))
    assert "kafka-broker-api-versions.sh" in check, "kafka: healthcheck should ask the broker"


def test_create_topics_runs_the_mounted_script():
    service = services()["create-topics"]
    assert service["image"] == services()["kafka"]["image"], "create-topics: not the kafka image"
    mounts = {target: source for source, target in bind_mounts(service)}
    argv = as_list(service.get("entrypoint")) + as_list(service.get("command"))
    script = next((a for a in argv if a in mounts), None)
    assert script, f"create-topics: runs {argv}, none of its bind mounts {sorted(mounts)}"
    assert host_path(mounts[script]) == TOPICS_SCRIPT, f"create-topics: {script} is not ours"
    assert any(v.endswith(":ro") for v in service["volumes"] if isinstance(v, str)), (
        "create-topics: mount the script read-only"
    )
    assert 'tools="${TOOLS_DIR:-/opt/kafka/bin}"' in TOPICS_SCRIPT.read_text(), (
        "create-topics.sh: the Kafka tools of apache/kafka are in /opt/kafka/bin"
    )


def run_topics_script(tmp_path: Path, env: dict[str, str]) -> list[list[str]]:
    """Run deploy/create-topics.sh with stand-in Kafka tools; their calls, one per list."""
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed (scripts/kafka/kafka.sh needs it too)"
    log = tmp_path / "calls.jsonl"
    for tool in ("kafka-topics.sh", "kafka-configs.sh"):
        stub = tmp_path / tool
        stub.write_text(
            f"#!{sys.executable}\nimport json, sys\n"
            f"open({str(log)!r}, 'a').write(json.dumps([{tool!r}] + sys.argv[1:]) + '\\n')\n"
        )
        stub.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    result = subprocess.run(
        [bash, str(TOPICS_SCRIPT)],
        env={**clean, **env, "TOOLS_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, f"create-topics.sh failed: {result.stderr}"
    return [json.loads(line) for line in log.read_text().splitlines()]


def option(call: list[str], name: str) -> str | None:
    return call[call.index(name) + 1] if name in call else None


def test_create_topics_creates_the_topic_settings_defaults(tmp_path):
    bootstrap = environment(services()["create-topics"]).get("BOOTSTRAP_SERVERS", "")
    calls = run_topics_script(tmp_path, {"BOOTSTRAP_SERVERS": bootstrap})
    creates = [c for c in calls if c[0] == "kafka-topics.sh" and "--create" in c]
    defaults = TopicSettings()
    expected = {
        defaults.usage,
        defaults.errors,
        defaults.customers,
        defaults.alerts,
        defaults.deadletter,
        defaults.silences,
    }
    compacted_topics = {defaults.customers, defaults.silences}
    created = {option(c, "--topic") for c in creates}
    assert created == expected, (
        f"create-topics.sh creates {sorted(map(str, created))}, TopicSettings has "
        f"{sorted(expected)}"
    )
    for call in creates:
        topic = option(call, "--topic")
        assert "--if-not-exists" in call, f"create-topics.sh: {topic} without --if-not-exists"
        assert option(call, "--bootstrap-server") == bootstrap, f"{topic}: wrong bootstrap"
        assert option(call, "--partitions") == str(defaults.partitions), (
            f"create-topics.sh: {topic} partitions {option(call, '--partitions')}, "
            f"TopicSettings.partitions is {defaults.partitions}"
        )
        assert option(call, "--replication-factor") == str(defaults.replication_factor), (
            f"create-topics.sh: {topic} replication differs from TopicSettings"
        )
        compacted = option(call, "--config") == "cleanup.policy=compact"
        assert compacted == (topic in compacted_topics), (
            f"create-topics.sh: {topic} compacted={compacted}; only the customers and "
            "silences topics (latest record per key) are compacted"
        )
    alters = [c for c in calls if c[0] == "kafka-configs.sh"]
    for topic in compacted_topics:
        assert any(
            option(c, "--entity-name") == topic
            and option(c, "--add-config") == "cleanup.policy=compact"
            for c in alters
        ), f"create-topics.sh: an existing {topic} topic is not made compacted"


def test_create_topics_honours_the_worker_topic_overrides(tmp_path):
    env = {
        "SPENDWATCH_KAFKA__TOPICS__USAGE": "acme.usage",
        "SPENDWATCH_KAFKA__TOPICS__PARTITIONS": "8",
    }
    calls = run_topics_script(tmp_path, env)
    created = {option(c, "--topic"): option(c, "--partitions") for c in calls if "--create" in c}
    assert created.get("acme.usage") == "8", (
        f"create-topics.sh ignores SPENDWATCH_KAFKA__TOPICS__* (created {created})"
    )
