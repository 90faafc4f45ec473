"""docker-compose.yml's structure (no Docker engine here to run it): the services, their
health checks, the worker's probes and port, and Prometheus' scrape target."""

import dataclasses
from pathlib import Path

import yaml

from streamer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_long_running_service_has_a_health_check() -> None:
    services = _compose()["services"]
    assert {"kafka", "topics", "redis", "worker", "prometheus"} <= set(services)
    for name, service in services.items():
        if name != "topics":  # a one-off job
            assert "healthcheck" in service, name
            assert service["healthcheck"]["test"], name


def test_the_worker_serves_its_probes_on_the_port_it_is_told() -> None:
    worker = _compose()["services"]["worker"]
    env = {k: str(v) for k, v in worker["environment"].items()}
    known = {f"STREAMREC_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    assert set(env) <= known, set(env) - known  # every variable is one the worker reads
    settings = Settings.from_env(env)
    assert settings.web_enabled and settings.web_bind == "0.0.0.0"
    assert str(settings.web_port) in worker["expose"]
    probe = " ".join(worker["healthcheck"]["test"])
    assert f":{settings.web_port}/health" in probe
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_prometheus_scrapes_every_worker_replica() -> None:
    services = _compose()["services"]
    mounted = services["prometheus"]["volumes"][0].split(":")[0]
    config = yaml.safe_load((ROOT / mounted).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (target,) = job["dns_sd_configs"]
    port = int(services["worker"]["environment"]["STREAMREC_WEB_PORT"])
    assert target["names"] == ["worker"] and target["port"] == port
