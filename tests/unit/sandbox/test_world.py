"""`polyarb sandbox reset`: the whole sandbox world goes, together, and only it."""

import socket

import msgspec
import pytest

from config.loader import load
from sandbox.world import reset, world_paths

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def config_in(tmp_path, port=1):
    cfg = load()
    sandbox = msgspec.structs.replace(
        cfg.sandbox,
        chain=msgspec.structs.replace(cfg.sandbox.chain, port=port, state_file=str(tmp_path / "w" / "anvil.json")),
        venue=msgspec.structs.replace(cfg.sandbox.venue, state_dir=str(tmp_path / "venue")))
    return msgspec.structs.replace(
        cfg, sandbox=sandbox, nonce=msgspec.structs.replace(cfg.nonce, state_dir=str(tmp_path / "state")),
        executor=msgspec.structs.replace(cfg.executor, state_dir=str(tmp_path / "state")))


def test_reset_removes_the_chain_state_and_every_state_folder(tmp_path):
    cfg = config_in(tmp_path)
    for p in world_paths(cfg):
        if p.suffix in (".json", ".good", ".blocks"):  # the chain's state, its good copy, its block log
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("{}")
        else:
            (p / "x.sqlite").parent.mkdir(parents=True, exist_ok=True)
            (p / "x.sqlite").write_text("")
    keep = tmp_path / "w" / "other.txt"
    keep.write_text("not the world's")
    out: list[str] = []

    assert reset(cfg, out) == 0

    assert not any(p.exists() for p in world_paths(cfg)) and keep.exists()
    assert out[0] == "removing the sandbox world:" and len(out) == 2 + 5  # five paths listed, then done
    assert reset(cfg, out) == 0 and out[-1] == "the sandbox world is already empty"


def test_reset_refuses_while_the_chain_runs_and_for_a_live_config(tmp_path):
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        cfg = config_in(tmp_path, port=listening.getsockname()[1])
        out: list[str] = []
        assert reset(cfg, out) == 1 and "stop `make run` first" in out[0]
    live = msgspec.structs.replace(cfg, sandbox=None)
    assert reset(live, out) == 2 and "never wiped" in out[-1]


def test_reset_of_the_default_layout_where_the_chain_state_is_inside_the_state_folder(tmp_path):
    # config/sandbox.yaml keeps anvil's state in run/state, the actors' folder: `make reset`
    # removed the folder, then failed on the chain's file inside it (already gone).
    cfg = config_in(tmp_path)
    inside = str(tmp_path / "state" / "anvil-state.json")
    cfg = msgspec.structs.replace(cfg, sandbox=msgspec.structs.replace(
        cfg.sandbox, chain=msgspec.structs.replace(cfg.sandbox.chain, state_file=inside)))
    (tmp_path / "state").mkdir()
    for name in ("anvil-state.json", "anvil-state.json.good", "x.sqlite"):
        (tmp_path / "state" / name).write_text("{}")
    out: list[str] = []
    assert reset(cfg, out) == 0, out
    assert not (tmp_path / "state").exists() and out[-1].startswith("done")
