"""anvil's state file survives a kill in the middle of a dump (sandbox/chain.py)."""

import json

import pytest

from sandbox.chain import good_copy, keep_good_state
from sandbox.chain_log import block_log, prune, read_blocks

pytestmark = pytest.mark.unit


def test_a_whole_state_is_kept_as_the_good_copy(tmp_path):
    state = tmp_path / "anvil-state.json"
    state.write_text(json.dumps({"block": {"number": "0x10"}}))
    assert keep_good_state(state) == "state loaded"
    assert json.loads(good_copy(state).read_text())["block"]["number"] == "0x10"


def test_a_dump_cut_by_a_kill_is_replaced_by_the_last_good_copy(tmp_path):
    # A chaos run: anvil SIGKILLed while it rewrote its 4 MB state; it then started a new
    # chain (another genesis) and every store of the world was archived, twice in one run.
    state = tmp_path / "anvil-state.json"
    state.write_text(json.dumps({"block": {"number": "0x10"}}))
    keep_good_state(state)
    state.write_text('{"block": {"number": "0x2')  # cut
    assert "cut by a kill" in keep_good_state(state)
    assert json.loads(state.read_text())["block"]["number"] == "0x10"


def test_a_cut_dump_without_a_good_copy_says_so(tmp_path):
    state = tmp_path / "anvil-state.json"
    state.write_text("")
    assert "no good copy" in keep_good_state(state)
    assert keep_good_state(tmp_path / "none.json") == "new world"


def test_only_the_first_worlds_genesis_block_is_kept(tmp_path):
    # anvil adds a block 0 of its own at every start and dumps them all; a later load took one
    # of them, and the genesis hash (every store's world identity) changed: stores archived.
    def block(n, ts):
        return {"header": {"number": hex(n), "timestamp": hex(ts)}}

    state = tmp_path / "anvil-state.json"
    blocks = [block(0, 300), block(1, 101), block(0, 100), block(2, 102), block(0, 200)]
    state.write_text(json.dumps({"block": {}, "blocks": blocks}))
    assert "2 later genesis blocks dropped" in keep_good_state(state)
    kept = json.loads(state.read_text())["blocks"]
    assert [(int(b["header"]["number"], 16), int(b["header"]["timestamp"], 16)) for b in kept] == [
        (1, 101), (0, 100), (2, 102)]
    assert keep_good_state(state) == "state loaded"  # nothing more to drop


def test_the_block_log_skips_a_line_cut_by_a_kill_and_prunes_what_the_good_copy_holds(tmp_path):
    state = tmp_path / "anvil-state.json"
    log = block_log(state)
    log.write_text('{"n":5,"raws":["0x01"]}\n{"n":6,"raws":["0x02","0x03"]}\nnot json\n{"n":7,"raws":["0x0')
    assert read_blocks(log) == [(5, ["0x01"]), (6, ["0x02", "0x03"])]
    prune(log, 5)
    assert read_blocks(log) == [(6, ["0x02", "0x03"])]


def test_a_new_world_never_mines_another_worlds_logged_blocks(tmp_path):
    state = tmp_path / "anvil-state.json"
    block_log(state).write_text('{"n":5,"raws":["0x01"]}\n')
    assert keep_good_state(state) == "new world"
    assert not block_log(state).exists()
