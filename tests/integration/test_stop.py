"""Every actor answers SIGTERM within its supervisord `stopwaitsecs`, in every state:
here while its dependencies are down and it is still starting or retrying."""

from __future__ import annotations

import configparser

import pytest
import yaml

from tests.helpers import wait_until
from tests.integration.conftest import ROOT, free_port, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACTORS = ("nonce", "executor", "feed", "router", "venue")


def stopwaitsecs(program: str) -> float:
    conf = configparser.RawConfigParser()
    conf.read(ROOT / "supervisord.conf")
    return float(conf.get(f"program:{program}", "stopwaitsecs"))


@pytest.mark.parametrize("name", ACTORS)
def test_an_actor_whose_dependencies_are_down_stops_on_sigterm_in_time(name, tmp_path, procs):
    dead = free_port()  # nothing listens here: chain, venue, nonce authority all unreachable
    path = write_config(tmp_path, f"http://127.0.0.1:{dead}", anvil_port=dead)
    raw = yaml.safe_load(path.read_text())
    raw["runtime"]["log_level"] = "DEBUG"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = procs("--config", str(path), "actor", name, name=name)
    wait_until(lambda: proc.output().strip(), timeout=30, what=f"{name} running")  # it is up, waiting or retrying

    code = proc.terminate(timeout=stopwaitsecs(name))

    assert code == 0, proc.output()[-2000:]
